"""The memory dashboard: memory by kind, allocators and fragmentation, large processes, host."""

from __future__ import annotations

from .board import dashboard, standard_vars
from .panels import LARGEST_FIRST, bargauge, row, table, timeseries
from .queries import Json, alarm_note, alarm_steps, eq, prom, sel


def memory() -> Json:
    binary = sel(eq("kind", "binary"))
    panels = [
        row("VM memory"),
        timeseries(
            "Memory by kind",
            "erlang:memory/0 by kind, per node (processes and system add up to total).",
            [
                prom(
                    "erlang_vm_memory_bytes"
                    + sel(
                        eq("kind", "processes|system|binary|ets|code|atom|persistent_term", "=~")
                    ),
                    "{{node}} {{kind}}",
                )
            ],
            "bytes",
        ),
        timeseries(
            "System memory by use",
            "Memory the emulator allocated that is not process memory, split as "
            "prometheus.erl does: atom, binary, code, ets and the rest.",
            [
                prom(
                    f"sum by (usage) (erlang_vm_memory_system_bytes{sel()})",
                    "{{usage}}",
                )
            ],
            "bytes",
            stack=True,
        ),
        timeseries(
            "Process memory used and free",
            "Memory allocated for process heaps: used, and allocated but free.",
            [prom(f"sum by (usage) (erlang_vm_memory_processes_bytes{sel()})", "{{usage}}")],
            "bytes",
            stack=True,
            w=8,
        ),
        timeseries(
            "Atom memory used and free",
            "Memory allocated for the atom table: used and free.",
            [prom(f"sum by (usage) (erlang_vm_memory_atom_bytes{sel()})", "{{usage}}")],
            "bytes",
            stack=True,
            w=8,
        ),
        timeseries(
            "Binary memory growth",
            "Binary memory over its lowest value of the last 10 minutes (the alarm's "
            "window); beamside only raises the alarm once binaries use 64 MiB or more."
            + alarm_note("binary_memory_growth", "{:g}x"),
            [
                prom(
                    f"erlang_vm_memory_bytes{binary}"
                    f" / min_over_time(erlang_vm_memory_bytes{binary}[10m])"
                )
            ],
            "none",
            steps=alarm_steps("binary_memory_growth"),
            w=8,
        ),
        row("Allocators"),
        timeseries(
            "Carriers by allocator",
            "Memory the alloc_util allocators got from the OS (carriers), per allocator "
            "type, summed over instances and carrier kinds.",
            [prom(f"sum by (alloc) (erlang_vm_allocator_carriers_bytes{sel()})", "{{alloc}}")],
            "bytes",
            stack=True,
        ),
        timeseries(
            "Allocator usage (1 - fragmentation)",
            "Blocks (data) over carriers of each allocator: a low ratio with large "
            "carriers means fragmented memory the VM holds but does not use.",
            [prom(f"erlang_vm_allocator_usage_ratio{sel()}", "{{node}} {{alloc}}")],
            "percentunit",
            max_=1,
        ),
        timeseries(
            "Unused carrier memory",
            "Bytes in carriers not used by blocks, per allocator (fragmentation in bytes).",
            [prom(f"sum by (alloc) (erlang_vm_allocator_unused_bytes{sel()})", "{{alloc}}")],
            "bytes",
            stack=True,
        ),
        fragmentation_table(),
        timeseries(
            "Segment cache hit ratio (mseg_alloc)",
            "Carriers mseg_alloc served from its cache of freed segments over all it was "
            "asked for, since the node started: a low ratio with many calls means carriers "
            "are mapped and unmapped over and over.",
            [prom(f"erlang_vm_mseg_alloc_cache_hit_ratio{sel()}", "{{node}}")],
            "percentunit",
            max_=1,
        ),
        timeseries(
            "Allocated vs used",
            "Bytes in all allocator carriers against erlang:memory(total): the gap is "
            "memory taken from the OS but not in use, less the JIT's code, which "
            "erlang:memory(total) counts outside the allocators.",
            [
                prom(f"erlang_vm_allocated_bytes{sel()}", "{{node}} carriers"),
                prom(
                    f"erlang_vm_memory_bytes{sel(eq('kind', 'total'))}",
                    "{{node}} total",
                ),
            ],
            "bytes",
        ),
        bargauge(
            "Largest internal areas",
            "The VM's own allocated areas (erlang:system_info(allocated_areas)), largest ten.",
            [
                prom(
                    f"topk(10, max by (area) (erlang_vm_allocated_area_bytes{sel()}))",
                    "{{area}}",
                    instant=True,
                )
            ],
            "bytes",
            w=12,
        ),
        row("Processes and host"),
        timeseries(
            "Largest process",
            "Memory of each node's largest process."
            + alarm_note("process_memory_high_watermark", "{:.0f} MiB", 1 / 2**20),
            [prom(f"erlang_vm_process_memory_max_bytes{sel()}")],
            "bytes",
            steps=alarm_steps("process_memory_high_watermark"),
        ),
        table(
            "Largest processes",
            "The processes using the most memory, by registered name or pid.",
            [
                prom(
                    f"max by (node, process) (erlang_vm_process_top_memory_bytes{sel()})",
                    "",
                    instant=True,
                    table=True,
                )
            ],
            unit="bytes",
            transformations=LARGEST_FIRST,
        ),
        timeseries(
            "Memory used",
            "Used fraction of the memory the node may use, as the "
            "system_memory_high_watermark alarm sees it: os_mon's memsup when it runs on "
            "the node, else the node's own view (its cgroup's limit and usage, or "
            "/proc/meminfo; the source is in the legend)."
            + alarm_note("system_memory_high_watermark", "{:.0%}"),
            [
                prom(
                    f"(1 - erlang_os_mon_memory_available_bytes{sel()} / on(node, family, cluster)"
                    f" erlang_os_mon_memory_total_bytes{sel()}) or on(node, family, cluster) "
                    f"(erlang_vm_memory_view_used_bytes{sel()}"
                    f" / erlang_vm_memory_view_limit_bytes{sel()})",
                    "{{node}} {{source}}",
                )
            ],
            "percentunit",
            steps=alarm_steps("system_memory_high_watermark"),
            max_=1,
        ),
        timeseries(
            "Host memory (os_mon)",
            "memsup's figures for the node's host: total, available, free and cached.",
            [
                prom(f"erlang_os_mon_memory_total_bytes{sel()}", "{{node}} total"),
                prom(f"erlang_os_mon_memory_available_bytes{sel()}", "{{node}} available"),
                prom(f"erlang_os_mon_memory_free_bytes{sel()}", "{{node}} free"),
                prom(f"erlang_os_mon_memory_cached_bytes{sel()}", "{{node}} cached"),
            ],
            "bytes",
        ),
    ]
    return dashboard(
        "beamside-memory",
        "beamside / Memory and allocators",
        "Where the memory of the nodes goes: kinds, allocators and fragmentation, the "
        "largest processes, the host.",
        standard_vars(),
        panels,
    )


def fragmentation_table() -> Json:
    """Per node and allocator: carriers against blocks and their ratio, most fragmented first."""
    by = "sum by (node, alloc)"
    return table(
        "Fragmentation by allocator",
        "Per allocator type (instances summed): bytes in carriers (held from the OS), in "
        "blocks (used) and their ratio. Memory/Allocators shows the same per instance, "
        "with carrier counts and mseg_alloc's cache per instance.",
        [
            prom(f"{by} (erlang_vm_allocator_carriers_bytes{sel()})", "", instant=True, table=True),
            prom(f"{by} (erlang_vm_allocator_blocks_bytes{sel()})", "", instant=True, table=True),
            prom(f"{by} (erlang_vm_allocator_usage_ratio{sel()})", "", instant=True, table=True),
        ],
        transformations=[
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {
                        "Value #A": "carriers",
                        "Value #B": "blocks",
                        "Value #C": "usage",
                    },
                },
            },
            {"id": "sortBy", "options": {"sort": [{"field": "usage", "desc": False}]}},
        ],
        overrides=[
            {
                "matcher": {"id": "byName", "options": name},
                "properties": [{"id": "unit", "value": unit}],
            }
            for name, unit in (("carriers", "bytes"), ("blocks", "bytes"), ("usage", "percentunit"))
        ],
    )
