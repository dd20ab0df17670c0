# -*- coding: utf-8 -*-
"""playbooks/health.yml on lab cells: the report under --limit, a failed and an unreachable
cell told apart, every cell failing, and its HTML opened in headless Chromium (a screenshot
taken and the tables read back from the DOM) to match the module's own results.
Also the module_defaults group pic.connectivity.cell: every member run under it."""
import html.parser
import json
import os
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT, exit_path_report, piclab, reset_cell, wait_for
from exit_helpers import ansible_bin, ansible_env
from test_dataplane import EXIT, converge

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


def run_playbook(inventory, playbook, *extra, **env):
    return subprocess.run([ansible_bin('ansible-playbook'), '-i', inventory, playbook] + list(extra),
                          capture_output=True, text=True, env=dict(ansible_env(), **env), timeout=300)


def fleet_inventory(tmp, cell):
    """cell1 of the lab, a cell whose module fails (its state dir is a file) and one that
    Ansible cannot reach (ssh to a closed port)."""
    not_a_dir = os.path.join(tmp, 'not-a-directory')
    with open(not_a_dir, 'w') as handle:
        handle.write('')
    inventory = {'pic_cells': {
        'vars': {'ansible_connection': 'local', 'ansible_become': False},
        'hosts': {
            'cell1': {'ansible_python_interpreter': os.path.join(piclab.run_dir(), 'bin', 'python-cell1'),
                      'pic_state_dir': cell.state_dir},
            'broken': {'ansible_python_interpreter': '/usr/bin/python3', 'pic_state_dir': not_a_dir},
            'gone': {'ansible_connection': 'ssh', 'ansible_host': '127.0.0.1', 'ansible_port': 9,
                     'ansible_ssh_common_args': '-o ConnectTimeout=3 -o StrictHostKeyChecking=no'},
        }}}
    path = os.path.join(tmp, 'hosts.yml')
    with open(path, 'w') as handle:
        yaml.safe_dump(inventory, handle)
    return path


class Tables(html.parser.HTMLParser):
    """The tables of a page by id: {id: [[cell text, ...] per row]} (header rows included)."""

    def __init__(self):
        super().__init__()
        self.tables, self.current, self.row, self.text = {}, None, None, None

    def handle_starttag(self, tag, attrs):
        if tag == 'table':
            self.current = dict(attrs).get('id')
            self.tables[self.current] = []
        elif tag == 'tr' and self.current is not None:
            self.row = []
            self.tables[self.current].append(self.row)
        elif tag in ('td', 'th') and self.row is not None:
            self.text = []

    def handle_endtag(self, tag):
        if tag in ('td', 'th') and self.text is not None:
            self.row.append(''.join(self.text).strip())
            self.text = None
        elif tag == 'table':
            self.current = self.row = None

    def handle_data(self, data):
        if self.text is not None:
            self.text.append(data)


def records(table):
    """A table's rows as dicts keyed by its header."""
    header = table[0]
    return [dict(zip(header, row)) for row in table[1:]]


def browser_tables(page, tmp):
    """Open PAGE in headless Chromium: its screenshot (PNG) is taken and its DOM read back."""
    shot = os.path.join(tmp, 'health.png')
    proc = subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
                           '--user-data-dir=' + os.path.join(tmp, 'chromium-profile'),
                           '--window-size=1600,1000', '--screenshot=' + shot, '--dump-dom', 'file://' + page],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(shot, 'rb') as handle:
        assert handle.read(8) == b'\x89PNG\r\n\x1a\n', 'no screenshot'
    parser = Tables()
    parser.feed(proc.stdout)
    return parser.tables


@pytest.fixture(scope='module')
def converged(cell):
    reset_cell(cell)   # (earlier test files may leave connections and peers on cell1)
    converge(cell)
    assert wait_for(lambda: cell.health(EXIT)['status'] == 'working', 60), exit_path_report(cell)
    return cell


@pytest.fixture(scope='module')
def report(converged, tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp('health-report'))
    page, markdown = os.path.join(tmp, 'health.html'), os.path.join(tmp, 'health.md')
    proc = run_playbook(fleet_inventory(tmp, converged), os.path.join(ROOT, 'playbooks', 'health.yml'),
                        '-e', 'pic_health_html=%s' % page, '-e', 'pic_health_markdown=%s' % markdown,
                        '-e', 'pic_health_force=true', ANSIBLE_SHOW_CUSTOM_STATS='true')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    # the module's own view of the cell, from the cache the report's probe just filled
    info = converged.module('pic_connectivity_info', {})
    return {'tmp': tmp, 'page': page, 'markdown': markdown, 'stdout': proc.stdout, 'info': info}


def test_the_html_report_in_a_browser_matches_the_module(report):
    assert CHROMIUM, 'chromium is not installed (make deps installs it): the HTML report is unchecked'
    tables = browser_tables(report['page'], report['tmp'])
    info = report['info']
    rows = records(tables['connections'])
    shown = sorted((r['connection'], r['type'], r['status']) for r in rows if r['cell'] == 'cell1')
    assert shown == sorted((c['name'], c['type'], c['health']['status']) for c in info['connections'].values())
    for cid, conn in info['connections'].items():
        row = [r for r in rows if r['cell'] == 'cell1' and r['connection'] == conn['name']][0]
        for peer in conn['users']['peers']:
            assert '%s (%s)' % (peer, info['peers'][peer]['carried_by']) in row['peers (carried by)'], row
        assert row['checked'][-5:-4] in '+-' or row['checked'].endswith('(cached)'), row
    cells = dict((r['cell'], r) for r in records(tables['cells']))
    assert cells['cell1']['state'] == 'ok'
    assert cells['cell1']['monitor'].startswith('running' if info['monitor'].get('monitor_at') else 'not running')
    assert cells['broken']['state'] == 'failed' and cells['broken']['reason']
    assert cells['gone']['state'] == 'unreachable' and 'ssh' in cells['gone']['reason'].lower()
    assert [r['status'] for r in rows if r['cell'] in ('broken', 'gone')] == ['failed', 'unreachable']
    totals = records(tables['totals'])[0]
    assert (totals['cells'], totals['ok'], totals['failed'], totals['unreachable']) == ('3', '1', '1', '1')
    assert totals['connections'] == str(len(info['connections']))
    assert totals['working'] == str(sum(1 for c in info['connections'].values()
                                        if c['health']['status'] == 'working'))


def test_markdown_printed_and_written_and_the_html_handed_to_awx(report):
    # the first columns as before this report grew (tests/lab/test_health.py had them)
    assert '| cell1 | Exit WG | wireguard_ext | working |' in report['stdout']
    with open(report['markdown']) as handle:
        markdown = handle.read()
    assert '| cell1 | Exit WG | wireguard_ext | working |' in markdown
    assert '| gone | unreachable |' in markdown and '| broken | failed |' in markdown
    assert '**Totals:** 3 cell(s): 1 ok, 1 failed, 1 unreachable;' in markdown
    with open(report['page']) as handle:
        page = handle.read()
    assert '<tr class="working"><td>cell1</td><td>Exit WG</td>' in page
    assert 'pic_health_report_html' in report['stdout'] and 'pic_health_report_totals' in report['stdout']


def test_limit_reports_on_the_limited_cells_only(converged, tmp_path):
    tmp = str(tmp_path)
    markdown = os.path.join(tmp, 'limited.md')
    proc = run_playbook(fleet_inventory(tmp, converged), os.path.join(ROOT, 'playbooks', 'health.yml'),
                        '-e', 'pic_health_markdown=%s' % markdown, '--limit', 'cell1')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    with open(markdown) as handle:
        text = handle.read()
    assert '| cell1 | Exit WG | wireguard_ext |' in text
    assert 'broken' not in text and 'gone' not in text
    assert '**Totals:** 1 cell(s): 1 ok, 0 failed, 0 unreachable;' in text


def test_a_report_when_every_cell_fails_and_strict_fails_after_it(converged, tmp_path):
    tmp = str(tmp_path)
    markdown = os.path.join(tmp, 'failing.md')
    proc = run_playbook(fleet_inventory(tmp, converged), os.path.join(ROOT, 'playbooks', 'health.yml'),
                        '-e', 'pic_health_markdown=%s' % markdown, '-e', 'pic_health_strict=true',
                        '--limit', 'broken,gone')
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert '1 cell(s) failed, 1 unreachable' in proc.stdout
    with open(markdown) as handle:
        text = handle.read()
    assert '**Totals:** 2 cell(s): 0 ok, 1 failed, 1 unreachable;' in text


def test_a_down_exit_shows_its_affected_peers(converged, tmp_path):
    tmp = str(tmp_path)
    markdown = os.path.join(tmp, 'down.md')
    piclab.exit_stop()
    try:
        assert wait_for(lambda: converged.health(EXIT)['status'] == 'down', 20)
        proc = run_playbook(fleet_inventory(tmp, converged), os.path.join(ROOT, 'playbooks', 'health.yml'),
                            '-e', 'pic_health_markdown=%s' % markdown, '--limit', 'cell1')
    finally:
        piclab.exit_start()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    with open(markdown) as handle:
        text = handle.read()
    row = [line for line in text.splitlines() if line.startswith('| cell1 | Exit WG |')][0]
    # p1 is fail-closed (blocked while its exit is down), p2 fail-open (on the cell's WAN)
    assert '| down |' in row and 'p1 (blocked), p2 (default)' in row, row
    assert '2 peer(s) or service(s) not carried by their exit, 1 of them blocked.' in text
    assert wait_for(lambda: converged.health(EXIT)['status'] == 'working', 20)


def test_the_role_runs_one_tag_alone(converged):
    proc = run_playbook(os.path.join(ROOT, 'lab', 'inventory', 'hosts.yml'),
                        os.path.join(ROOT, 'playbooks', 'site.yml'), '--tags', 'peers', '--check')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert 'TASK [pic.connectivity.connectivity : Assign peers to their exits]' in proc.stdout
    for other in ('Converge connections that are present', 'Install the Debian packages',
                  'Copy the collection', 'Remove connections that are absent'):
        assert other not in proc.stdout, other


# -- the module_defaults group: every member of meta/runtime.yml's group takes its options

GROUP_ARGS = {
    # module: (arguments, check mode); the changing ones run in check mode (nothing changes)
    'pic_connectivity_info': ({}, False),
    'pic_health': ({'connection': EXIT}, False),
    'pic_commit': ({'action': 'status'}, False),
    'pic_connection': ({'name': EXIT, 'state': 'present'}, True),
    'pic_peer_exit': ({'peer': 'p3', 'connection': 'default'}, True),
    'pic_service_egress': ({'service': 'no-such-service', 'state': 'absent'}, True),
    'pic_cell_link': ({'links': []}, True),
    'pic_cell': ({'state': 'gathered'}, False),
}


def test_every_module_runs_under_module_defaults_of_its_group(converged, tmp_path):
    with open(os.path.join(ROOT, 'meta', 'runtime.yml')) as handle:
        members = yaml.safe_load(handle)['action_groups']['cell']
    assert sorted(members) == sorted(GROUP_ARGS), 'a member of group cell without a task here'
    settings = json.loads(converged.registry_bytes())['settings']
    defaults = dict((key, settings[key]) for key in ('peer_interface', 'local_networks', 'mark_mask', 'table_base',
                                                     'priority_base', 'port_base'))
    defaults['state_dir'] = converged.state_dir
    tasks = [{'name': name, 'pic.connectivity.' + name: args, 'check_mode': check, 'register': 'out_' + name}
             for name, (args, check) in sorted(GROUP_ARGS.items())]
    tasks.append({'name': 'The group defaults reached the modules (the lab state dir is not the default)',
                  'ansible.builtin.assert': {'that': ["'exit-wg' in out_pic_connectivity_info.connections",
                                                      "'exit-wg' in out_pic_health.connections",
                                                      'out_pic_commit.registry_sha256 is not none',
                                                      "%r in out_pic_cell.gathered.connections | map(attribute='name')" % EXIT]}})
    play = [{'name': 'Every member of group/pic.connectivity.cell', 'hosts': 'cell1', 'gather_facts': False,
             'module_defaults': {'group/pic.connectivity.cell': defaults}, 'tasks': tasks}]
    path = os.path.join(str(tmp_path), 'group.yml')
    with open(path, 'w') as handle:
        yaml.safe_dump(play, handle)
    before = converged.registry_bytes()
    proc = run_playbook(os.path.join(ROOT, 'lab', 'inventory', 'hosts.yml'), path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert 'Unsupported parameters' not in proc.stdout
    assert converged.registry_bytes() == before
