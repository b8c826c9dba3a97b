"""The `tqa` command tree: every command and group is wired here; the bodies live in one module per area."""

from __future__ import annotations

import sys

import typer

from ml.errors import UserError, disk_full, disk_full_message
from ops.cli import ct, dataset, evaluate, feedback, index, infra, query, release, train

HELP = "Transformers QA: ask the HuggingFace Transformers repository a question, get a cited answer."


def _group(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True)


app = typer.Typer(name="tqa", help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

app.command()(index.setup)
app.command()(index.ingest)
app.command()(index.status)
app.command()(index.sync)
app.command()(index.watch)

app.command()(query.search)
app.command()(query.ask)
app.command()(query.serve)

eval_app = _group("Measure retrieval and answers on question sets.")
eval_app.command()(evaluate.retrieval)
eval_app.command()(evaluate.run)
app.add_typer(eval_app, name="eval")
app.command()(evaluate.register)

train_app = _group("Train the learned parts of the pipeline on the configured index.")
train_app.command()(train.ranker)
train_app.command()(train.generator)
app.add_typer(train_app, name="train")

feedback_app = _group("Ratings and corrections people sent from the web page: review them, export approved pairs.")
for command in (feedback.review, feedback.approve, feedback.reject, feedback.forward, feedback.export, feedback.stats):
    feedback_app.command()(command)
app.add_typer(feedback_app, name="feedback")
app.command()(feedback.dashboard)

dataset_app = _group("Build and check the QA dataset generated from the index.")
dataset_app.command()(dataset.build)
dataset_app.command()(dataset.check)
app.add_typer(dataset_app, name="dataset")

mlflow_app = _group("The local MLflow tracking server.")
mlflow_app.command("up")(evaluate.mlflow_up)
app.add_typer(mlflow_app, name="mlflow")

infra_app = _group("Chameleon infrastructure: leases (python-chi), OpenTofu/Terraform, Ansible.")
for command in (
    infra.lease,
    infra.extend,
    infra.release,
    infra.plan,
    infra.apply,
    infra.destroy,
    infra.inventory,
    infra.configure,
):
    infra_app.command()(command)
app.add_typer(infra_app, name="infra")

release_app = _group("Releases: a registered version, staging -> canary -> production behind HAProxy.")
for command in (release.deploy, release.canary, release.promote, release.status, release.rollback, release.down):
    release_app.command()(command)
app.add_typer(release_app, name="release")

ct_app = _group("Continuous training: retrain on new data and feedback, gated, handed to the canary.")
ct_app.command()(ct.run)
ct_app.command()(ct.status)
app.add_typer(ct_app, name="ct")


def main() -> None:
    """Entry point: user mistakes become one clear sentence and exit code 2, never a traceback."""
    try:
        app()
    except UserError as exc:
        typer.secho(f"Error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except Exception as exc:
        if not disk_full(exc):
            raise
        from ml.settings import Settings

        typer.secho(f"Error: {disk_full_message(Settings().data_dir)}", fg=typer.colors.RED, err=True)
        sys.exit(2)
