"""Tables, sessions, migrations runner and repositories (SQLAlchemy); no HTTP, no engine."""
