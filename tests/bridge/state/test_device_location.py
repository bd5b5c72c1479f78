"""A device's location (issue 14: the phone shows it before a pairing is approved): the store on SQLite and on a
real PostgreSQL, ``loginbridge devices add --location`` / ``devices list``, and the demo's devices."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from bridge.demo import seed
from bridge.errors import RequestError
from bridge.state.store import DeviceMode, Store
from tests.bridge.state.test_store import tenant
from tests.bridge.test_cli import arun, conf
from tests.servers.postgres import pg_database, postgres_server, store_url

__all__ = ["conf", "pg_database", "postgres_server", "store_url"]


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    async with await Store.open(store_url) as s:
        await s.add_user(tenant(), email="desk@example.com", username="desk")
        yield s


async def test_location_is_stored_read_back_and_changed(store: Store) -> None:
    device, secret = await store.add_device("example", name="MFP", mode="user-prompt", device_id="mfp-1",
                                            location="  Reception, ground floor\t")
    assert device.location == "Reception, ground floor"  # stripped
    for read in (await store.get_device("mfp-1"), await store.authenticate_device("mfp-1", secret),
                 (await store.list_devices("example"))[0]):
        assert read is not None and read.location == "Reception, ground floor"
    shared, _ = await store.add_device("example", name="Lobby", mode="shared-account",
                                       shared_user_email="desk@example.com", device_id="lobby",
                                       location="Lobby, by the door")  # the other insert statement
    assert (await store.get_device("lobby")) == shared and shared.location == "Lobby, by the door"
    bare, _ = await store.add_device("example", name="Old", mode="user-prompt", device_id="old-mfp")
    assert bare.location == ""

    moved = await store.update_device("mfp-1", location=" 2nd floor print room ")
    assert (moved.location, moved.name) == ("2nd floor print room", "MFP")
    renamed = await store.update_device("mfp-1", name="MFP 2", mode="device-login")
    assert (renamed.location, renamed.name, renamed.mode) == ("2nd floor print room", "MFP 2",
                                                              DeviceMode.DEVICE_LOGIN)  # None: unchanged
    cleared = await store.update_device("mfp-1", location="")
    assert cleared.location == "" and (await store.get_device("mfp-1")) == cleared
    longest = "x" * 128
    assert (await store.update_device("mfp-1", location=longest)).location == longest


@pytest.mark.parametrize("bad", ["x" * 129, "floor\x072", "two\nlines", "\u202eroolf dn2", "tab\tinside"])
async def test_a_bad_location_is_refused_and_nothing_changes(store: Store, bad: str) -> None:
    await store.add_device("example", name="MFP", mode="user-prompt", device_id="mfp-1", location="Reception")
    with pytest.raises(RequestError, match="at most 128 printable characters"):
        await store.update_device("mfp-1", location=bad)
    with pytest.raises(RequestError, match="at most 128 printable characters"):
        await store.add_device("example", name="MFP", mode="user-prompt", device_id="mfp-2", location=bad)
    device = await store.get_device("mfp-1")
    assert device is not None and device.location == "Reception"
    assert await store.get_device("mfp-2") is None


async def test_the_cli_adds_a_device_with_its_location_and_lists_it(conf: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    c = ("--config", str(conf))
    code, out, err = await arun(capsys, "devices", "add", *c, "--tenant", "example", "--name", "MFP 2F",
                                "--mode", "user-prompt", "--device-id", "mfp-2f",
                                "--location", "2nd floor print room")
    assert code == 0, err
    code, out, err = await arun(capsys, "devices", "add", *c, "--tenant", "example", "--name", "Plain",
                                "--mode", "user-prompt", "--device-id", "plain-mfp")
    assert code == 0, err
    async with await Store.open(conf.parent.parent / "state") as store:
        device = await store.get_device("mfp-2f")
        assert device is not None and device.location == "2nd floor print room"

    code, out, _ = await arun(capsys, "devices", "list", *c, "--json")
    assert {d["device_id"]: d["location"] for d in json.loads(out)} == {"mfp-2f": "2nd floor print room",
                                                                         "plain-mfp": ""}
    code, out, _ = await arun(capsys, "devices", "list", *c)
    lines = {line.split("\t")[0]: line for line in out.splitlines()}
    assert lines["mfp-2f"].endswith("\tat 2nd floor print room") and "\tat " not in lines["plain-mfp"]

    code, _, err = await arun(capsys, "devices", "add", *c, "--tenant", "example", "--name", "Bad",
                              "--mode", "user-prompt", "--location", "x" * 129)
    assert code == 2 and "at most 128 printable characters" in err


async def test_the_demo_gives_its_devices_a_location_without_moving_a_placed_one(store: Store,
                                                                                 tmp_path: Path) -> None:
    await store.add_user(tenant(), email="frontdesk@example.com", username="frontdesk")
    await store.add_device("example", name="Demo MFP", mode="user-prompt", device_id="demo-mfp")  # a state from 12
    await store.add_device("example", name="Badge", mode="device-login", device_id="demo-badge",
                           location="Moved by an administrator")
    config = SimpleNamespace(tenants=(tenant(),))
    for _ in range(2):  # idempotent
        await seed(config, store, tmp_path)  # type: ignore[arg-type]
        places = {d.device_id: d.location for d in await store.list_devices("example")}
        assert places == {"demo-mfp": "2nd floor print room", "demo-lobby": "Reception, ground floor",
                          "demo-badge": "Moved by an administrator"}
