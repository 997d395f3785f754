"""The run loop: processor, runner, delivery, committer, stats, bad-input reports."""
