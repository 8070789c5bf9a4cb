"""What the commands do: evaluate, play, export, dream dispatch, run listing. The CLI and the web app call these."""
