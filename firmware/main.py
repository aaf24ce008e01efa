"""Boot entry of a microswarm node: run the worker (see worker.py)."""
import worker

worker.main()
