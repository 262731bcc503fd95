"""The composition root: the command line, the roles as processes (``inferq.roles``), the
embedded dev stack and the HTTP client. Only this package may import the roles."""
