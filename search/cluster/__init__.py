"""Work on a Ray cluster: classification of exported shards."""
