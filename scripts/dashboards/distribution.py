"""The distribution dashboard: Distributed Erlang links per node, traffic, backlog,
and (with ``metrics.dist_per_peer``) the same per peer."""

from __future__ import annotations

from .board import dashboard, standard_vars
from .panels import row, state_timeline, timeseries
from .queries import RATE, Json, alarm_note, alarm_steps, per_minute, prom, sel

#: the title of the per-peer row; tests/test_dashboards.py proves the panels
#: under it with per-peer on, the others in the default aggregate mode
PER_PEER_ROW = "Per peer (metrics.dist_per_peer: true)"
PER_PEER_NOTE = (
    " Per-peer series exist only with `metrics.dist_per_peer: true` (at most "
    "`dist_max_peers` peers per node; the rest is the `_omitted` peer)."
)


def _per_node(metric: str) -> str:
    """A node's total in both modes: the aggregate series, or the sum of the
    per-peer ones (which the `_omitted` series completes)."""
    return f"sum by (node) (rate({metric}{sel()}[{RATE}]))"


def distribution() -> Json:
    peer = "{{node}} → {{peer}}"
    # per-peer series only: in the default mode the sums carry no peer label
    pp = sel('peer!=""')
    panels = [
        row("Links"),
        timeseries(
            "Distribution links",
            "Nodes each node is connected to (visible and hidden)." + alarm_note("dist_link_limit"),
            [prom(f"erlang_vm_dist_links{sel()}")],
            "short",
            steps=alarm_steps("dist_link_limit"),
            w=8,
        ),
        timeseries(
            "Peers by state and type",
            "Connections of each node by state (up, pending) and type: visible peers "
            "(the mesh) and hidden ones (beamside itself, tools).",
            [prom(f"erlang_vm_dist_peers{sel()}", "{{node}} {{state}} {{type}}")],
            "short",
            w=8,
        ),
        timeseries(
            "Pending connections",
            "Distribution connections being set up.",
            [prom(f"erlang_vm_dist_pending_connections{sel()}")],
            "short",
            w=8,
        ),
        row("Traffic"),
        timeseries(
            "Bytes sent",
            "Bytes per second each node writes to all its distribution sockets.",
            [prom(_per_node("erlang_vm_dist_send_bytes"))],
            "Bps",
            w=8,
        ),
        timeseries(
            "Bytes received",
            "Bytes per second each node reads from all its distribution sockets.",
            [prom(_per_node("erlang_vm_dist_recv_bytes"))],
            "Bps",
            w=8,
        ),
        timeseries(
            "Packets",
            "Packets per second each node sends and receives on its distribution sockets.",
            [
                prom(_per_node("erlang_vm_dist_send_cnt"), "{{node}} sent"),
                prom(_per_node("erlang_vm_dist_recv_cnt"), "{{node}} received"),
            ],
            "pps",
            w=8,
        ),
        row("Backlog"),
        timeseries(
            "Output queued",
            "Bytes queued in the node's distribution ports (send_pend), in all and in the "
            "fullest: grows when a link or a peer cannot keep up.",
            [
                prom(f"sum by (node) (erlang_vm_dist_send_pend_bytes{sel()})", "{{node}} all"),
                prom(f"erlang_vm_dist_output_queue_max_bytes{sel()}", "{{node}} largest"),
            ],
            "bytes",
            w=8,
        ),
        timeseries(
            "Busy distribution ports",
            "Distribution ports whose queue is at or over their high watermark: the "
            "driver is busy and the VM buffers further output, up to the busy limit "
            "(+zdbbl), past which senders are suspended (busy_dist_port).",
            [prom(f"erlang_vm_dist_busy_ports{sel()}")],
            "short",
            w=8,
        ),
        timeseries(
            "Busy distribution port events",
            "busy_dist_port events per minute from erlang:system_monitor: processes "
            "suspended because the distribution buffer was full."
            + alarm_note("busy_dist_port", "{:g}/min"),
            [prom(per_minute("busy_dist_port"))],
            "opm",
            steps=alarm_steps("busy_dist_port"),
            w=8,
        ),
        row(PER_PEER_ROW),
        state_timeline(
            "Connection state by peer",
            "State of each node's connection to each peer: pending, up_pending or up. "
            "A link that leaves `up` between nodes of a family raises dist_link_down."
            + PER_PEER_NOTE,
            [prom(f"erlang_vm_dist_node_state{sel()}", peer)],
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "unknown", "color": "gray", "index": 0},
                        "1": {"text": "pending", "color": "orange", "index": 1},
                        "2": {"text": "up_pending", "color": "yellow", "index": 2},
                        "3": {"text": "up", "color": "green", "index": 3},
                    },
                }
            ],
            steps=[{"color": "red", "value": None}, {"color": "green", "value": 3}],
        ),
        timeseries(
            "Bytes sent per peer",
            "Bytes per second written to each distribution socket." + PER_PEER_NOTE,
            [prom(f"rate(erlang_vm_dist_send_bytes{pp}[{RATE}])", peer)],
            "Bps",
        ),
        timeseries(
            "Bytes received per peer",
            "Bytes per second read from each distribution socket." + PER_PEER_NOTE,
            [prom(f"rate(erlang_vm_dist_recv_bytes{pp}[{RATE}])", peer)],
            "Bps",
        ),
        timeseries(
            "Packets per peer",
            "Packets per second sent and received on each distribution socket." + PER_PEER_NOTE,
            [
                prom(f"rate(erlang_vm_dist_send_cnt{pp}[{RATE}])", peer + " sent"),
                prom(f"rate(erlang_vm_dist_recv_cnt{pp}[{RATE}])", peer + " received"),
            ],
            "pps",
        ),
        timeseries(
            "Average packet size per peer",
            "Average size of the packets sent and received per peer." + PER_PEER_NOTE,
            [
                prom(f"erlang_vm_dist_send_avg_bytes{sel()}", peer + " sent"),
                prom(f"erlang_vm_dist_recv_avg_bytes{sel()}", peer + " received"),
            ],
            "bytes",
        ),
        timeseries(
            "Bytes waiting in the socket per peer",
            "Bytes queued in each distribution socket (send_pend): grows when the link "
            "or the peer cannot keep up." + PER_PEER_NOTE,
            [prom(f"erlang_vm_dist_send_pend_bytes{pp}", peer)],
            "bytes",
            w=8,
        ),
        timeseries(
            "Distribution port queue per peer",
            "Bytes queued in each distribution port, against the busy limit (+zdbbl) "
            "the VM's buffer for the connection may reach before senders are suspended."
            + PER_PEER_NOTE,
            [
                prom(f"erlang_vm_dist_port_queue_size_bytes{sel()}", peer),
                prom(
                    f"erlang_vm_dist_buf_busy_limit_bytes{sel()} and on (node) "
                    f"erlang_vm_dist_port_queue_size_bytes{sel()}",
                    "{{node}} busy limit",
                ),
            ],
            "bytes",
            w=8,
        ),
        timeseries(
            "Peers left out",
            "Connected peers of each node without per-peer series (over "
            "`metrics.dist_max_peers`); their traffic is the `_omitted` peer's." + PER_PEER_NOTE,
            [prom(f"beamside_dist_peers_omitted{sel()}")],
            "short",
            w=8,
        ),
    ]
    return dashboard(
        "beamside-distribution",
        "beamside / Distribution",
        "Distributed Erlang per node: links, state, traffic and backlog; per peer with "
        "metrics.dist_per_peer.",
        standard_vars(),
        panels,
    )
