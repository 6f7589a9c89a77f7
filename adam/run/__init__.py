"""What runs a job: the runner, its session (lock, manifest, resume, stop policy), sweeps and shard runs."""
