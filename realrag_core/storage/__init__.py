"""Where artifacts live: the artifact store, object-storage sync, resumable Parquet manifests."""
