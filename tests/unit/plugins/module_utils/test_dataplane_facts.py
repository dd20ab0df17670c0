# -*- coding: utf-8 -*-
"""dataplane.Cell reads the cell's facts once per module run (hold_facts)."""
from ansible_collections.pic.connectivity.plugins.module_utils import dataplane
from ansible_collections.pic.connectivity.plugins.module_utils.registry import empty


def counting_cell(monkeypatch, hold):
    cell = dataplane.Cell.__new__(dataplane.Cell)
    cell._held_facts = {} if hold else None
    reads = []

    def read(doc):
        reads.append(doc)
        return {'peer_networks': [], 'interfaces': [], 'down': [], 'present': ['wg0']}
    monkeypatch.setattr(cell, '_read_facts', read)
    return cell, reads


def test_a_run_reads_the_facts_once_per_document_shape(monkeypatch):
    cell, reads = counting_cell(monkeypatch, hold=True)
    doc = empty()
    for _step in ('local networks check', 'check', 'converge'):
        cell.facts(doc)
    assert len(reads) == 1
    other = dict(doc, services={'mail': {'name': 'mail', 'address': ['10.1.0.2/32'], 'interface': 'svc0'}})
    cell.facts(other)                         # another interface to look at: read again
    assert len(reads) == 2
    cell._forget_facts()                      # the run changed an exit interface
    cell.facts(other)
    assert len(reads) == 3


def test_without_hold_every_call_reads(monkeypatch):
    """The monitor's long-lived cell never keeps facts between its passes."""
    cell, reads = counting_cell(monkeypatch, hold=False)
    doc = empty()
    cell.facts(doc)
    cell.facts(doc)
    cell._forget_facts()
    assert len(reads) == 2
