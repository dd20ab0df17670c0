# -*- coding: utf-8 -*-
"""The cell stamp: computed from the version, library and packages; stale until written."""
import pytest

from ansible_collections.pic.connectivity.plugins.module_utils import stamp
from ansible_collections.pic.connectivity.plugins.module_utils.errors import PicError


def test_the_stamp_changes_with_each_part_and_not_with_the_package_order():
    lib = stamp.library_digest({'a.py': b'x', 'exits/b.py': b'y'})
    base = stamp.compute('1.0.0', lib, ['nftables', 'iproute2'])
    assert base == stamp.compute('1.0.0', lib, ['iproute2', 'nftables'])
    assert base != stamp.compute('1.0.1', lib, ['nftables', 'iproute2'])
    assert base != stamp.compute('1.0.0', stamp.library_digest({'a.py': b'z', 'exits/b.py': b'y'}), ['nftables'])
    assert base != stamp.compute('1.0.0', lib, ['nftables'])


def test_stale_until_written(tmp_path):
    value = stamp.compute('1.0.0', 'x', [])
    assert stamp.is_stale(str(tmp_path / 's'), value)
    stamp.write(str(tmp_path / 's'), value)
    assert not stamp.is_stale(str(tmp_path / 's'), value)
    assert (tmp_path / 's' / stamp.STAMP_FILE).stat().st_mode & 0o777 == 0o600


def test_a_bad_stamp_is_refused(tmp_path):
    with pytest.raises(PicError):
        stamp.is_stale(str(tmp_path), 'x; rm -rf /')


def test_an_installed_library_that_differs_makes_the_stamp_stale(tmp_path):
    lib = tmp_path / 'lib'
    (lib / 'exits').mkdir(parents=True)
    payload = {'a.py': b'x', 'exits/b.py': b'y'}
    for name, data in payload.items():
        (lib / name).write_bytes(data)
        (lib / name).chmod(0o644)
    state = str(tmp_path / 's')
    value = stamp.compute('1.0.0', stamp.library_digest(payload), [])
    stamp.write(state, value)
    digest = stamp.library_digest(payload)
    assert not stamp.is_stale(state, value, str(lib), digest)
    (lib / '__pycache__').mkdir()
    (lib / '__pycache__' / 'c.py').write_bytes(b'z')
    assert not stamp.is_stale(state, value, str(lib), digest)
    (lib / 'a.py').chmod(0o600)
    assert stamp.is_stale(state, value, str(lib), digest)
    (lib / 'a.py').chmod(0o644)
    (lib / 'extra.py').write_bytes(b'')
    (lib / 'extra.py').chmod(0o644)
    assert stamp.is_stale(state, value, str(lib), digest)


def test_a_monitor_of_the_cell_is_found_by_its_command_line(tmp_path):
    import subprocess
    import sys
    import time
    state = str(tmp_path / 'state')
    assert not stamp.monitor_running(state)
    proc = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', 'monitor', '--state-dir', state])
    try:
        deadline = time.monotonic() + 5
        while not stamp.monitor_running(state) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stamp.monitor_running(state)
        assert not stamp.monitor_running(state + '2')   # another cell's monitor is not this one's
    finally:
        proc.kill()
        proc.wait()
    assert not stamp.monitor_running(state)
