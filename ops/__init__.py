"""Operating the pipeline: the local stack, the main job (demo) and the `billing` command."""
