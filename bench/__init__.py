"""The benchmark harness (`python -m bench`): every backend figure beside a raw baseline
measured in the same run on the same nats-server, as a ratio, against the issues' targets."""
