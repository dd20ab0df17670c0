"""piclab: the local cell lab for pic.connectivity (network namespaces + real daemons).

CLI:  python3 lab/piclab up [--cells N] [--light] | down | status | exec NODE -- CMD...
      | fetch PEER [-4|-6] [--cell cellN] | probe PEER [-4|-6] [--cell cellN]
      | exit-stop | exit-start | counters-reset | counters
API:  sys.path.insert(0, "lab"); import piclab; piclab.up(cells=1); piclab.fetch("p1", 6);
      piclab.down() ...  Everything this module exports is public; the modules:

  addresses    addresses, names and paths (no side effects)
  commands     host and node commands, `ip -batch`, nft tables, files (LabError)
  processes    the lab's daemons: start, find, stop (spawn/stop for plugins)
  keys         WireGuard keys and the configs built from them
  topology     namespaces, links, addresses and routes, nft tables
  wireguard    the lab's own wg0 interfaces
  traffic      requests to the echo server, probe bursts, counters, verification
  exit_server  stop / start the WireGuard exit
  servers      exit servers of the other types (plugins in lab/servers/)
  lifecycle    up, down, status
  cli          the command line
  echo_server.py, probe_burst.py, bulk_server.py, bulk_client.py, dns_query.py, uncarried_burst.py,
  steady_sender.py, leak_sender.py, cell_resolver.py: scripts the lab and its tests run inside its
  namespaces (their paths: ECHO_SERVER, PROBE_BURST, DNS_QUERY, ...).

Stdlib only.  Uses ip, nft, wg, wireguard-go, curl.  Needs root.
Nothing is ever configured in the root namespace: every address and route lives
in a namespace named "<PICLAB_PREFIX>-<node>" (default prefix "picl").
See lab/README.md for the topology.
"""

from .addresses import (  # noqa: F401
    ACCESS_PREFIX4, ACCESS_V4, CELL_TUN_V4, CELL_TUN_V6, EXIT_TUN_V4, EXIT_TUN_V6, EXIT_V4,
    EXIT_V6, INET_PREFIX4, INET_PREFIX6, INET_V4, INET_V6, KEEPALIVE, LAB_DIR, MAX_CELLS,
    NSEXEC, PEER_INDEX, PEERS, PKG_DIR, PYTHON, SERVER_NET4, SERVER_NET6, SERVER_PORT,
    SERVER_ROUTER4, SERVER_ROUTER6, SERVER_V4, SERVER_V6, WAN_IF, WG_IF, WG_PORT,
    LIGHT_PEER_IF, LIGHT_PEERS, cell_index, cell_name, cell_names, cells, daemon_log, env_light,
    exit_address, exit_client_address, exit_config_path, family_number, lab_info, light,
    light_peer_node, mac, netns_path, node_dir, nodes, ns, peer_address,
    peer_node, peer_nodes, peer_nodes_of, peer_underlay, prefix, python_wrapper, run_dir, run_path,
    server_address, server_url, split_peer, state_dir, wan_address, wan_host)
from .commands import (  # noqa: F401
    LabError, ipbatch, lab_env, links, namespace_pids, namespaces, nft_replace, run, sh, tail,
    write_file)
from .processes import (  # noqa: F401
    ECHO_SERVER, cmdline, daemon_marker, daemon_pid, in_node, kill_strays, kill_wait,
    lab_daemons, marker, proc_alive, spawn, start_daemon, stop)
from .keys import key, public_key, wg_conf  # noqa: F401
from .topology import ensure_ns, ensure_veth, public_nat, wan_lines  # noqa: F401
from .wireguard import handshakes, wait_handshake  # noqa: F401
from .traffic import (  # noqa: F401
    CELL_RESOLVER, DNS_QUERY, LEAK_SENDER, STEADY_SENDER, UNCARRIED_BURST, counters, counters_reset, fetch, fetch_node, send_probe, sources, verify_lab, via_exit, via_wan)
from .exit_server import exit_start, exit_stop  # noqa: F401
from .servers import SERVERS_DIR, public_host, server_plugins  # noqa: F401
from .lifecycle import cells_present, down, status, up  # noqa: F401
from .cli import main  # noqa: F401
