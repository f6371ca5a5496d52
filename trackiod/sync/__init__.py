"""Data leaving and entering the node: the Parquet layout, export, the Hub, pull, deploy."""
