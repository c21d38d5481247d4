"""The distribution dashboard: Distributed Erlang links per node and peer, traffic, backlog."""

from __future__ import annotations

from .board import dashboard, standard_vars
from .panels import row, state_timeline, timeseries
from .queries import RATE, Json, alarm_note, alarm_steps, per_minute, prom, sel


def distribution() -> Json:
    peer = "{{node}} → {{peer}}"
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
            "Connected nodes by type",
            "Visible peers (the mesh) and hidden ones (beamside itself, tools).",
            [prom(f"erlang_vm_dist_nodes{sel()}", "{{node}} {{type}}")],
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
        state_timeline(
            "Connection state by peer",
            "State of each node's connection to each peer: pending, up_pending or up. "
            "A link that leaves `up` between nodes of a family raises dist_link_down.",
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
        row("Traffic"),
        timeseries(
            "Bytes sent per peer",
            "Bytes per second written to each distribution socket.",
            [prom(f"rate(erlang_vm_dist_send_bytes{sel()}[{RATE}])", peer)],
            "Bps",
        ),
        timeseries(
            "Bytes received per peer",
            "Bytes per second read from each distribution socket.",
            [prom(f"rate(erlang_vm_dist_recv_bytes{sel()}[{RATE}])", peer)],
            "Bps",
        ),
        timeseries(
            "Packets per peer",
            "Packets per second sent and received on each distribution socket.",
            [
                prom(f"rate(erlang_vm_dist_send_cnt{sel()}[{RATE}])", peer + " sent"),
                prom(f"rate(erlang_vm_dist_recv_cnt{sel()}[{RATE}])", peer + " received"),
            ],
            "pps",
        ),
        timeseries(
            "Average packet size",
            "Average size of the packets sent and received per peer.",
            [
                prom(f"erlang_vm_dist_send_avg_bytes{sel()}", peer + " sent"),
                prom(f"erlang_vm_dist_recv_avg_bytes{sel()}", peer + " received"),
            ],
            "bytes",
        ),
        row("Backlog"),
        timeseries(
            "Bytes waiting in the socket",
            "Bytes queued in each distribution socket (send_pend): grows when the link "
            "or the peer cannot keep up.",
            [prom(f"erlang_vm_dist_send_pend_bytes{sel()}", peer)],
            "bytes",
            w=8,
        ),
        timeseries(
            "Distribution port queue",
            "Bytes queued in each distribution port, against the busy limit (+zdbbl) "
            "past which senders are suspended.",
            [
                prom(f"erlang_vm_dist_port_queue_size_bytes{sel()}", peer),
                prom(f"erlang_vm_dist_buf_busy_limit_bytes{sel()}", "{{node}} busy limit"),
            ],
            "bytes",
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
    ]
    return dashboard(
        "beamside-distribution",
        "beamside / Distribution",
        "Distributed Erlang per node and peer: links, state, traffic and backlog.",
        standard_vars(),
        panels,
    )
