%%% ===========================================================================
%%% beamside_ops_node -- what a node is: GetNode of the Nodes service of the
%%% control plane.
%%% ===========================================================================
%%%
%%% Called by the sidecar through rex; the reply shape ({ok, _} | {error,
%%% {Kind, Message}}), the rules every operator tool follows and the text
%%% limits (depth, chars) are in beamside_ops's header.
%%%
%%%   node_info(Opts)              system info, applications (name, vsn,
%%%                                description), release from init:script_id
%%% ===========================================================================
-module(beamside_ops_node).

-export([node_info/1]).

-import(beamside_ops, [text/2, bin/1, bad_opts/0]).

-type reply(T) :: beamside_ops:reply(T).

%%% ---------------------------------------------------------------------------
%%% node

-spec node_info(map()) -> reply(map()).
node_info(Opts) when is_map(Opts) ->
    Apps = try application:which_applications(1000)
           catch _:_ -> []
           end,
    Info = [{otp_release, fun() -> erlang:system_info(otp_release) end},
            {erts_version, fun() -> erlang:system_info(version) end},
            {system_architecture, fun() -> erlang:system_info(system_architecture) end},
            {emulator_flavor, fun() -> erlang:system_info(emu_flavor) end},
            {wordsize, fun() -> erlang:system_info(wordsize) end},
            {schedulers, fun() -> erlang:system_info(schedulers) end},
            {schedulers_online, fun() -> erlang:system_info(schedulers_online) end},
            {logical_processors, fun() -> erlang:system_info(logical_processors) end},
            {process_count, fun() -> erlang:system_info(process_count) end},
            {process_limit, fun() -> erlang:system_info(process_limit) end},
            {port_count, fun() -> erlang:system_info(port_count) end},
            {port_limit, fun() -> erlang:system_info(port_limit) end},
            {atom_count, fun() -> erlang:system_info(atom_count) end},
            {atom_limit, fun() -> erlang:system_info(atom_limit) end},
            {ets_count, fun() -> erlang:system_info(ets_count) end},
            {ets_limit, fun() -> erlang:system_info(ets_limit) end},
            {memory_total, fun() -> erlang:memory(total) end},
            {memory_processes, fun() -> erlang:memory(processes) end},
            {memory_ets, fun() -> erlang:memory(ets) end},
            {memory_binary, fun() -> erlang:memory(binary) end},
            {memory_atom, fun() -> erlang:memory(atom) end},
            {memory_code, fun() -> erlang:memory(code) end},
            {uptime_ms, fun() -> element(1, erlang:statistics(wall_clock)) end},
            {os_pid, fun() -> os:getpid() end},
            {os_type, fun() -> os:type() end},
            {dist_nodes, fun() -> length(nodes()) end},
            {net_ticktime, fun() -> net_kernel:get_net_ticktime() end},
            {loaded_modules, fun() -> length(code:all_loaded()) end},
            {boot_script, fun() -> init:script_id() end}],
    System = maps:from_list([{K, safe_text(F, Opts)} || {K, F} <- Info]),
    {ok, #{system => System,
           applications => [#{name => atom_to_binary(A, utf8),
                              version => bin(V),
                              description => bin(D)}
                            || {A, D, V} <- lists:sort(Apps)]}};
node_info(_) ->
    bad_opts().

safe_text(F, Opts) ->
    try F() of
        V when is_list(V) -> bin(V);
        V -> text(V, Opts)
    catch C:R -> text({C, R}, Opts)
    end.
