"""A cell service (what runs as a container on the cell's service network):
node ``cellK-svc`` behind the cell's ``svc0`` (172.31.0.0/24, fd00:31::/64),
for cell1 and cell2.  Its outbound traffic goes through the cell."""

import piclab

CELL_V4, CELL_V6 = "172.31.0.1", "fd00:31::1"
SERVICE_V4, SERVICE_V6 = "172.31.0.10", "fd00:31::10"
INTERFACE = "svc0"


def node(cell="cell1"):
    return "%s-svc" % cell


def address(family=4):
    return SERVICE_V4 if family == 4 else SERVICE_V6


def up(ncells):
    for k in range(1, min(ncells, 2) + 1):
        cell, svc = "cell%d" % k, node("cell%d" % k)
        piclab.ensure_ns(svc, router=False)
        piclab.ensure_veth(svc, "eth0", cell, INTERFACE)
        piclab.ipbatch(cell, ["link set %s up" % INTERFACE,
                               "addr replace %s/24 dev %s" % (CELL_V4, INTERFACE),
                               "addr replace %s/64 dev %s nodad" % (CELL_V6, INTERFACE)])
        piclab.ipbatch(svc, ["link set lo up", "link set eth0 up",
                              "addr replace %s/24 dev eth0" % SERVICE_V4,
                              "addr replace %s/64 dev eth0 nodad" % SERVICE_V6,
                              "route replace default via %s" % CELL_V4,
                              "route replace ::/0 via %s" % CELL_V6])
