"""The training-loop kit every trainer uses (DreamerV3, the VAE, the MDN-RNN, the controller).

One trainer = a pure jitted `update` plus a host loop built from these pieces:

- `session.writer_session(run, command)`: holds the run's single-writer lock for the whole run, sweeps
  temp files killed writers left, and turns SIGINT/SIGTERM into `stop.requested` (check it between
  iterations, never let KeyboardInterrupt into JAX or orbax).
- `schedule.Every(n)` / `schedule.Ratio(train_ratio, replayed_per_update)`: when to evaluate,
  checkpoint, log; how many updates an env step owes.
- `checkpointer.Checkpointer`: resume from the newest checkpoint that restores (a damaged one is
  reported, set aside, and the previous one used), NaN stop (`check_finite` -> `TrainingDiverged`,
  the last good checkpoint kept), save on stop (`interrupted` -> `TrainingInterrupted`).
- `metrics.MetricsLogger`: one record scheme (`trainer`, `kind`, `step`, `time`, `<model>/<name>`
  values) in metrics.jsonl; resume drops records past the checkpoint resumed.
- `keys.stream_key(seed, stream, counter)`: random keys are folded from the seed and a checkpointed
  counter, never stored in a checkpoint.
- `outcomes`: `TrainingDiverged` (CLI exit 1) and `TrainingInterrupted` (CLI exit 130).
- `mesh`: data parallelism on `jax.sharding` (a one-axis mesh over every process's devices, the batch
  split along it, the state replicated; `jax.jit` compiles one global step).
- `distributed`: `initialize` joins a multi-process run (`jax.distributed`; options, JAX_* env vars or
  SLURM), `Watchdog` turns a collective whose peer died into one error line.

The skeleton::

    run = RunDir(run_dir)
    with writer_session(run, "train-vae") as stop:
        log = MetricsLogger(run, "vae")
        with Checkpointer(run.checkpoint_dir("vae"), "VAE", metrics=log, warn=warn) as ckpt:
            restored = ckpt.resume(jax.eval_shape(init, jax.random.key(0)))
            state = restored.state if restored else init(jax.random.key(seed))
            every = Every(eval_every)
            step = int(state.step)
            while step < total and not stop.requested:
                state, losses = update(state, next(batches), stream_key(seed, 0, step))
                step += 1
                if every.due(step):
                    losses = jax.device_get(losses)
                    ckpt.check_finite(losses, where=f"step {step}", step=step)
                    log.log("train", step, {"vae/loss": losses["loss"]})   # log, then save
                    ckpt.save(step, state, config, best_metric=-losses["loss"])
            if stop.requested:
                raise ckpt.interrupted(step, state, config, where=f"step {step}")
"""
