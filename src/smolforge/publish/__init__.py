"""Publishing a run: `staging` lays out every repo (the main one, the GGUF repo, one per quantized variant when
asked) for a push or an offline export, and `push` sends each as one commit to the Hub; `request` holds what
both take and the exact command that repeats a publish."""
