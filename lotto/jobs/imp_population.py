"""IMP for a population (`mode = "imp"` with `config.seeds`): K tickets found together.

Every level trains the K replicas in one program; between levels each
replica prunes its own final weights (`imp.prune_level`) and rewinds to its
own theta_k. Replica s writes exactly the files of a single IMP run of seed s
in `workdir/seed_<s>/` (levels, masks, checkpoints, results.json, report), so
a population resumes level by level as single runs do. Branches run per
seed (`run_imp` refuses them with seeds).
"""
from __future__ import annotations

from typing import Sequence

import ml_collections

from lotto.jobs.defaults import LEGACY_FIELDS
from lotto.jobs.experiment import Experiment
from lotto.jobs.imp import (ImpRun, ImpSettings, finish_level, finish_run, finished_level,
                            level_dir, level_masks, level_start, run_header)
from lotto.jobs.population import create_population, write_population_results
from lotto.runtime import runs
from lotto.train.hooks import Hook
from lotto.train.population import PopulationTrainer, population_train_run, replica


def run_population(config: ml_collections.ConfigDict, exp: Experiment, settings: ImpSettings,
                   workdir: str, hooks: Sequence[Hook]) -> dict:
  """Runs (or resumes) the IMP runs of `exp.seeds` as one population; pools their results.

  Returns:
    The population's results (`jobs.population.write_population_results`),
    pooled over the replicas' last levels.
  """
  population = create_population(exp, workdir, LEGACY_FIELDS)
  trainer = PopulationTrainer(population.experiment, population.seeds)
  replicas = [ImpRun(replica_exp, settings, directory, hooks, trainer=trainer)
              for replica_exp, directory in zip(population.replicas, population.directories)]
  headers = [run_header(run) for run in replicas]
  levels: list[list[dict]] = [[] for _ in replicas]
  for level in range(settings.levels + 1):
    records = _run_level(trainer, replicas, level)
    for run, header, done, record in zip(replicas, headers, levels, records):
      done.append({k: v for k, v in record.items() if k != "history"})
      runs.write_results(run.workdir, {**header, "complete": False, "levels": done,
                                       "branches": []})
  results = [finish_run(run, header, done, []) for run, header, done
             in zip(replicas, headers, levels)]
  last = [{**result["levels"][-1], "wall_time_s": sum(l["wall_time_s"] for l in result["levels"])}
          for result in results]
  return write_population_results(workdir, exp, config, population, last)


def _run_level(trainer: PopulationTrainer, replicas: Sequence[ImpRun], level: int) -> list[dict]:
  """One level of every replica: read back where all are done, else trained together."""
  finished = [finished_level(run, level) for run in replicas]
  if all(record is not None for record, _ in finished):  # the next level loads their finals
    return [record for record, _ in finished]
  prepared = [level_masks(run, level, masks) for run, (_, masks) in zip(replicas, finished)]
  starts = [level_start(run, level, masks) for run, (masks, _) in zip(replicas, prepared)]
  label = f"level {level}/{replicas[0].settings.levels}"
  stacked, summaries = population_train_run(
      trainer, [level_dir(run.workdir, level) for run in replicas],
      [initial for initial, _ in starts], keep=starts[0][1], label=label,
      hooks=replicas[0].hooks)
  return [finish_level(run, level, replica(stacked, index), summary, masks, report)
          for index, (run, summary, (masks, report))
          in enumerate(zip(replicas, summaries, prepared))]
