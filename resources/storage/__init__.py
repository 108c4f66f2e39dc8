"""Where the platform keeps things: the Parquet/DuckDB warehouse and code versions."""
