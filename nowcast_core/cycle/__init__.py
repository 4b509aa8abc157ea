"""The forecast cycle: its steps over the database (``steps``), one installation's state and the
cycle's operations (``service``), and the lock that keeps two cycles apart (``locks``)."""
