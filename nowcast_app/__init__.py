"""The application: the ``nowcast`` command line (and, later, the web server) above the library
(``nowcast_core``) and its orchestration (``flows``)."""
