"""Files that start one run on many machines: an sbatch script for a SLURM cluster, a SkyPilot task for any
cloud or Kubernetes cluster. Both are rendered from the same facts (`common`): the checked topology, the
`smolforge run` every node runs, and the secrets the run needs, which are never written into either file."""
