"""The application: the ``nowcast`` command line and the web server (``web``) above the library
(``nowcast_core``) and its orchestration (``flows``)."""
