"""Identifiers and the pooled random source behind them."""

from __future__ import annotations

import os

from agentline.ids import _RandomPool, new_dispatch_id, random_bytes, random_hex


def test_ids_are_unique_sortable_and_prefixed() -> None:
    ids = [new_dispatch_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("dsp_") and len(i) == 30 for i in ids)
    assert ids[0][:14] <= ids[-1][:14]  # the time part sorts


def test_the_pool_hands_out_each_byte_once_and_refills() -> None:
    pool = _RandomPool()
    taken = [pool.take(10) for _ in range(2 * _RandomPool.BLOCK // 10)]  # two blocks' worth
    assert all(len(chunk) == 10 for chunk in taken)
    assert len(set(taken)) == len(taken)
    assert len(pool.take(_RandomPool.BLOCK + 1)) == _RandomPool.BLOCK + 1  # larger than a block
    assert len(random_hex(6)) == 12 and random_bytes(3) != random_bytes(3)


def test_a_forked_child_does_not_repeat_its_parents_bytes() -> None:
    random_bytes(1)  # the parent's pool holds a block now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next bytes and leave at once
        os.write(write, random_bytes(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert child != random_bytes(16)
