"""Storage: the database (SQLite), its schema and migrations, and turns."""
