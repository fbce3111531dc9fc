"""Database: engine, typed models, job states, data access and migrations."""
