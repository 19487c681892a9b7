"""The `hitcounter` command: serve, manage sites, check the configuration.

Every command builds the app the way a server does, so it reaches the same data: the
configured Redis, or the embedded store (the running one, or this data directory's
snapshot when no server runs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from flask import Flask, current_app

from hitcounter import create_app, embedded
from hitcounter.config import DEFAULTS
from hitcounter.errors import HitcounterError
from hitcounter.services import Services, get_services

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def services() -> Iterator[Services]:
    """The app's services, with our errors shown as plain messages."""
    app: Flask = create_app()
    with app.app_context():
        try:
            yield get_services()
        except HitcounterError as exc:
            raise click.ClickException(exc.message) from exc


def snippet(public_url: str, site: str) -> str:
    base = public_url.rstrip("/")
    return (
        f'<script async src="{base}/counter.js" data-site="{site}"></script>\n'
        "<span data-hitcounter></span> views"
    )


@click.group()
@click.version_option(package_name="hitcounter")
def main() -> None:
    """A self-hosted page hit counter."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--workers", type=int, help="gunicorn worker processes [default: CPU count, at least 2]."
)
@click.option(
    "--connections", type=int, help="Connections each worker serves at once [default: 1000]."
)
def serve(host: str, port: int, workers: int | None, connections: int | None) -> None:
    """Serve with gunicorn; without HITCOUNTER_REDIS_URL, on the embedded store."""
    env = dict(os.environ)
    store_process = None
    if not env.get("HITCOUNTER_REDIS_URL"):
        data_dir = Path(env.get("HITCOUNTER_DATA_DIR") or DEFAULTS["DATA_DIR"]).resolve()
        url = embedded.running_url(data_dir)
        if url is None:
            interval = env.get("HITCOUNTER_SAVE_INTERVAL", "30")
            store_command = [sys.executable, "-m", "hitcounter.embedded"]
            store_command += ["--data-dir", str(data_dir), "--save-interval", interval]
            store_process = subprocess.Popen(store_command)
            url = embedded.wait_for_url(data_dir)
        env["HITCOUNTER_REDIS_URL"] = url
        # The embedded store answers over a polled loopback socket: allow it more time.
        env.setdefault("HITCOUNTER_REDIS_TIMEOUT", "5")
    command = [sys.executable, "-m", "gunicorn", "-c", "python:hitcounter.gunicorn_conf"]
    command += ["--bind", f"{host}:{port}"]
    if workers:
        command += ["--workers", str(workers)]
    if connections:
        command += ["--worker-connections", str(connections)]
    command.append("hitcounter:create_app()")
    click.echo(f"hitcounter: serving on http://{host}:{port}/", err=True)
    server = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame: Any) -> None:
        server.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
    code = server.wait()
    if store_process is not None:
        store_process.terminate()  # it saves before it exits
        store_process.wait(30)
    sys.exit(code)


@main.group()
def site() -> None:
    """Register and manage sites."""


def settings_body(
    domains: tuple[str, ...],
    public: bool | None,
    timezone: str | None,
    dedupe: int | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if domains:
        body["domains"] = list(domains)
    if public is not None:
        body["public"] = public
    if timezone is not None:
        body["timezone"] = timezone
    if dedupe is not None:
        body["dedupe_seconds"] = dedupe
    return body


def setting_options(func: F) -> F:
    """The options shared by `site add` and `site update`."""
    options = [
        click.option("--domain", "domains", multiple=True, help="Allowed domain (repeatable)."),
        click.option("--timezone", help="IANA timezone days are counted in (default UTC)."),
        click.option("--dedupe", type=int, help="Dedupe window in seconds (0 counts every view)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@site.command("add")
@click.argument("name")
@setting_options
@click.option("--public", is_flag=True, default=None, help="Stats readable without a token.")
def site_add(
    name: str, domains: tuple[str, ...], timezone: str | None, dedupe: int | None, public: bool
) -> None:
    """Register a site; print its read token (shown once) and the snippet to paste."""
    with services() as s:
        found, token = s.sites.create(
            {"name": name} | settings_body(domains, public, timezone, dedupe)
        )
        public_url = str(current_app.config["PUBLIC_URL"])
    click.echo(f"Registered site {found.name!r}.")
    click.echo(f"Read token (shown only now; store it safely): {token}")
    click.echo("Paste this where the count should appear:\n")
    click.echo(snippet(public_url, found.name))


@site.command("list")
def site_list() -> None:
    """List the sites."""
    with services() as s:
        sites = s.sites.all()
    if not sites:
        click.echo("No sites yet: add one with `hitcounter site add NAME`.")
        return
    for found in sites:
        visibility = "public" if found.public else "private"
        domains = ",".join(found.domains) or "any domain"
        click.echo(f"{found.name}\t{visibility}\t{found.timezone}\t{domains}")


@site.command("show")
@click.argument("name")
def site_show(name: str) -> None:
    """Show a site's settings as JSON."""
    with services() as s:
        click.echo(json.dumps(s.sites.fresh(name).settings(), indent=2))


@site.command("update")
@click.argument("name")
@setting_options
@click.option("--public/--private", default=None, help="Whether stats need a token.")
@click.option("--any-domain", is_flag=True, help="Clear the allowed domains.")
def site_update(
    name: str,
    domains: tuple[str, ...],
    timezone: str | None,
    dedupe: int | None,
    public: bool | None,
    any_domain: bool,
) -> None:
    """Change a site's settings."""
    body = settings_body(domains, public, timezone, dedupe)
    if any_domain:
        body["domains"] = []
    if not body:
        raise click.UsageError("nothing to change: give at least one option")
    with services() as s:
        click.echo(json.dumps(s.sites.update(name, body).settings(), indent=2))


@site.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def site_remove(name: str, yes: bool) -> None:
    """Remove a site and all of its data."""
    if not yes:
        click.confirm(f"Remove {name!r} and all of its counts?", abort=True)
    with services() as s:
        s.sites.delete(name)
    click.echo(f"Removed site {name!r}.")


@site.command("token")
@click.argument("name")
def site_token(name: str) -> None:
    """Issue a new read token; the old one stops working."""
    with services() as s:
        token = s.sites.rotate_token(name)
    click.echo(f"New read token for {name!r} (shown only now): {token}")


@main.command()
def check() -> None:
    """Check the configuration and that the store answers."""
    try:
        app = create_app()
    except HitcounterError as exc:  # e.g. no node of a cluster answers at start-up
        raise click.ClickException(f"store unreachable: {exc.message}") from exc
    cfg = app.config
    click.echo(f"store: {cfg['REDIS_URL'] or 'embedded, in ' + str(cfg['DATA_DIR'])}")
    click.echo(
        f"admin API: {'on' if cfg.get('ADMIN_TOKEN') else 'off (HITCOUNTER_ADMIN_TOKEN unset)'}"
    )
    for key in ("PUBLIC_URL", "RETENTION_DAYS", "MAX_PAGES", "RATE_LIMIT_PER_MINUTE"):
        click.echo(f"{key.lower()}: {cfg[key]}")
    click.echo(f"trusted proxies: {cfg['TRUSTED_PROXIES'] or 'none'}")
    with app.app_context():
        try:
            get_services().store.ping()
        except HitcounterError as exc:
            raise click.ClickException(f"store unreachable: {exc.message}") from exc
    click.echo("store: answers")


# -- stats, export and import ------------------------------------------------------------


@main.command("stats")
@click.argument("name")
@click.option("--from", "start", metavar="YYYY-MM-DD", help="First day (default: 29 days ago).")
@click.option("--to", "end", metavar="YYYY-MM-DD", help="Last day (default: today).")
@click.option("--limit", default=10, show_default=True, help="Top pages and referrers shown.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answers.")
def stats_command(name: str, start: str | None, end: str | None, limit: int, as_json: bool) -> None:
    """Show a site's totals, top pages and referrers over a range of days."""
    from hitcounter import stats

    with services() as s:
        found = s.sites.fresh(name)
        span = stats.parse_range(found, start, end)
        limit = stats.parse_int(str(limit), "limit", stats.DEFAULT_LIMIT, 1, stats.MAX_LIMIT)
        totals = stats.summary(s.store, found, span)
        pages = stats.top_pages(s.store, found, span, limit=limit)
        referrers = stats.top_referrers(s.store, found, span, limit=limit)
    if as_json:
        click.echo(json.dumps({"stats": totals, "pages": pages, "referrers": referrers}, indent=2))
        return
    click.echo(f"{found.name}: {span.start} to {span.end} ({found.timezone})")
    click.echo(
        f"  hits {totals['hits']:,}  raw {totals['raw_hits']:,}  visitors {totals['visitors']:,}"
        f"  pages {totals['pages']:,}  all time {totals['all_time']['hits']:,}"
    )
    dropped = ", ".join(f"{reason} {n:,}" for reason, n in totals["dropped"].items())
    click.echo(f"  not counted: {dropped}")
    for title, rows, key in (
        ("top pages", pages["pages"], "path"),
        ("referrers", referrers["referrers"], "host"),
    ):
        click.echo(f"\n{title}:")
        for row in rows:
            click.echo(f"  {row['hits']:>10,}  {row[key]}")
        if not rows:
            click.echo("  (none)")


@main.command("export")
@click.argument("name")
@click.option(
    "--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-",
    help="File to write (default: standard output).",
)  # fmt: skip
def export_command(name: str, fmt: str, output: str) -> None:
    """Export everything kept for a site (the JSON is what `import` takes back)."""
    from hitcounter.transfer import Export

    with services() as s:
        found = s.sites.fresh(name)
        plan = Export.plan(s.store, found, retention_days=int(current_app.config["RETENTION_DAYS"]))
        with click.open_file(output, "w", encoding="utf-8") as out:
            if output == "-":  # the export itself is on stdout: no progress bar around it
                write_export(plan, fmt, out, lambda _n: None)
            else:
                with click.progressbar(
                    length=len(plan.days) + 1, label=f"exporting {found.name}", file=sys.stderr
                ) as bar:
                    write_export(plan, fmt, out, bar.update)
    if output != "-":
        click.echo(f"Exported {found.name!r}: {len(plan.days)} days to {output}.", err=True)


def write_export(plan: Any, fmt: str, out: Any, progress: Callable[[int], None]) -> None:
    chunks = plan.json_chunks(progress) if fmt == "json" else plan.csv_chunks(progress)
    for chunk in chunks:
        out.write(chunk)


@main.command("import")
@click.argument("name")
@click.argument("source", type=click.File("r", encoding="utf-8"))
def import_command(name: str, source: Any) -> None:
    """Import an export (restores it) or {"pages": {path: hits}} starting counts."""
    from hitcounter.transfer import import_body, import_size

    try:
        body = json.load(source)
    except ValueError as exc:
        raise click.ClickException(f"{source.name} is not JSON: {exc}") from exc
    with services() as s:
        config = current_app.config
        with click.progressbar(
            length=max(import_size(body), 1), label=f"importing into {name}", file=sys.stderr
        ) as bar:
            summary = import_body(
                s,
                name,
                body,
                max_pages=int(config["MAX_PAGES"]),
                retention_days=int(config["RETENTION_DAYS"]),
                progress=bar.update,
            )
    click.echo(json.dumps(summary))
