"""The failure-drill harness behind bench/drills.py: stack, processes, proxy, jobs, drills."""
