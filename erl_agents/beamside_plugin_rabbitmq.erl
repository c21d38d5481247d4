%%% ===========================================================================
%%% beamside_plugin_rabbitmq -- RabbitMQ: resource alarms, totals, health.
%%% ===========================================================================
%%%
%%% Applies when the rabbit application runs or is loaded (RabbitMQ 3.8 to 3.13; tested
%%% with Debian's 3.10).  Runs in a process bounded by plugin_timeout_ms (see
%%% beamside_plugin); every call to a RabbitMQ process below has its own
%%% timeout (at most 500 ms, within half of plugin_timeout_ms), and a part
%%% that fails or runs out of time is {error, Reason} alone.  Nothing here
%%% can write to the node's log: the calls are made to the servers directly
%%% (the API functions log a warning when a server is not up yet).
%%%
%%%   version      rabbit's application version (binary)
%%%   running      rabbit:is_running(): the boot finished (boolean); when
%%%                false (booting, or stopped with rabbitmqctl stop_app:
%%%                the plugin applies while the rabbit module is loaded),
%%%                the section has nothing else
%%%   alarms       the node's own resource alarms, [memory | disk |
%%%                file_descriptor_limit] (rabbit_alarm's get_local_alarms:
%%%                RabbitMQ keeps them in its own event manager, apart from
%%%                SASL's alarm_handler; while one is set, publishers are
%%%                blocked cluster-wide)
%%%   memory       #{used, limit, watermark}: what vm_memory_monitor compares
%%%                (bytes; limit 0 or absent: no limit)
%%%   disk         #{free, limit}: what rabbit_disk_monitor last measured
%%%                (bytes; its table is read, nothing is called)
%%%   totals       #{connections, channels, consumers, queues}: the sizes of
%%%                RabbitMQ's core metrics tables (what rabbitmq_prometheus
%%%                reports as rabbitmq_connections, ...); a table that does
%%%                not exist is left out
%%%   messages     #{ready, unacked, total, queues}: sums over the node's
%%%                queues (queue_coarse_metrics, walked in chunks, at most
%%%                max_queues (100,000) rows)
%%%   vhosts       #{VHost => #{queues, ready, unacked, total}}, the same per
%%%                virtual host, at most max_vhosts (50) of them (the
%%%                largest by messages); never per queue
%%%   vhosts_truncated  true when a bound cut the walk or the vhosts
%%%   top_queues   only with option top_queues N (0, the default: never per
%%%                queue; at most 100): the N queues with the most messages
%%%                (ready + unacked, non-empty), most first, [#{vhost, name,
%%%                ready, unacked, total}], from the same walk
%%%   counters     [#{labels => #{Label => atom()}, values => #{Name => int}}]:
%%%                rabbit_global_counters (3.9 and later; the protocol and
%%%                queue type totals rabbitmq_prometheus names
%%%                rabbitmq_global_*), at most 32 groups of 32 counters
%%%   cluster      #{name, nodes, running, partitions}: the cluster's name,
%%%                its disc and RAM members, those running, and the nodes
%%%                rabbit_node_monitor sees this node partitioned from
%%%   vhosts_down  [VHost]: virtual hosts whose supervisor or message
%%%                stores are down (rabbit_vhost_sup_sup:check/0, asked only
%%%                when there are at most max_vhosts vhosts)
%%%
%%% Cost: two gen_server calls (vm_memory_monitor, rabbit_node_monitor), one
%%% gen_event call (rabbit_alarm), ETS reads, and the walk of one row per
%%% local queue; vhosts_down asks each vhost supervisor for its children.
%%% ===========================================================================
-module(beamside_plugin_rabbitmq).
-behaviour(beamside_plugin).

-export([name/0, applies/1, collect/1]).

-define(CALL_MS, 500).
-define(CHUNK, 1000).
-define(MAX_GROUPS, 32).
-define(MAX_COUNTERS, 32).
-define(MAX_NODES, 100).
-define(NAME_BYTES, 200).

-spec name() -> atom().
name() -> rabbitmq.

%% Also on a node where rabbit was loaded but does not run (booting, or
%% stopped with rabbitmqctl stop_app): then the section says running false.
-spec applies([atom()]) -> boolean().
applies(Apps) -> lists:member(rabbit, Apps) orelse erlang:module_loaded(rabbit).

-spec collect(map()) -> map().
collect(Opts) ->
    Deadline = beamside_plugin:deadline(Opts),
    S = fun beamside_agent:safe/1,
    case S(fun() -> rabbit:is_running() end) of
        true ->
            beamside_plugin:with_version(rabbit, running(Opts, Deadline));
        NotRunning ->
            beamside_plugin:with_version(rabbit, #{running => NotRunning})
    end.

running(Opts, Deadline) ->
    MaxVhosts = beamside_agent:int_opt(max_vhosts, Opts, 50, {0, 10000}),
    MaxQueues = beamside_agent:int_opt(max_queues, Opts, 100000, {0, 10000000}),
    S = fun beamside_agent:safe/1,
    TopN = beamside_agent:int_opt(top_queues, Opts, 0, {0, 100}),
    {Messages, Vhosts, Cut, Top} =
        case S(fun() -> queues(MaxQueues, MaxVhosts, TopN, Deadline) end) of
            {error, _} = E -> {E, E, false, E};
            Walked -> Walked
        end,
    Base = case TopN of
               0 -> #{};
               _ -> #{top_queues => Top}
           end,
    Base#{running => true,
      alarms => S(fun() -> alarms(Deadline) end),
      memory => S(fun() -> memory(Deadline) end),
      disk => S(fun disk/0),
      totals => S(fun totals/0),
      messages => Messages,
      vhosts => Vhosts,
      vhosts_truncated => Cut,
      counters => S(fun counters/0),
      cluster => S(fun() -> cluster(Deadline) end),
      vhosts_down => S(fun() -> vhosts_down(MaxVhosts) end)}.

%%% ---------------------------------------------------------------------------

alarms(Deadline) ->
    Alarms = gen_event:call(rabbit_alarm, rabbit_alarm, get_local_alarms,
                            beamside_plugin:call_ms(Deadline, ?CALL_MS)),
    lists:usort([resource(A) || A <- Alarms]).

resource({{resource_limit, Resource, _Node}, _}) when is_atom(Resource) -> Resource;
resource({file_descriptor_limit, _}) -> file_descriptor_limit;
resource({Other, _}) -> beamside_agent:reason(Other);
resource(Other) -> beamside_agent:reason(Other).

memory(Deadline) ->
    T = beamside_plugin:call_ms(Deadline, ?CALL_MS),
    {Used, Limit} = gen_server:call(vm_memory_monitor, get_cached_process_memory_and_limit, T),
    Watermark = gen_server:call(vm_memory_monitor, get_vm_memory_high_watermark, T),
    #{used => Used, limit => number_or_none(Limit), watermark => watermark(Watermark)}.

number_or_none(N) when is_number(N) -> N;
number_or_none(_) -> none.

%% A fraction of the RAM, or {absolute, Bytes} (rabbitmq.conf
%% vm_memory_high_watermark.absolute).
watermark(F) when is_number(F) -> F;
watermark({absolute, N}) when is_number(N) -> #{absolute => N};
watermark(Other) -> beamside_agent:reason(Other).

disk() ->
    Get = fun(Key) ->
                  case ets:lookup(rabbit_disk_monitor, Key) of
                      [{Key, V}] when is_number(V) -> [{Key, V}];
                      _ -> []
                  end
          end,
    maps:from_list([{free, V} || {disk_free, V} <- Get(disk_free)]
                   ++ [{limit, V} || {disk_free_limit, V} <- Get(disk_free_limit)]).

totals() ->
    maps:from_list([{Name, Size}
                    || {Table, Name} <- [{connection_created, connections},
                                         {channel_created, channels},
                                         {consumer_created, consumers},
                                         {queue_metrics, queues}],
                       Size <- [ets:info(Table, size)], is_integer(Size)]).

%% One walk over queue_coarse_metrics ({#resource{virtual_host = VHost},
%% Ready, Unacked, Messages, Reductions}), in chunks, until MaxQueues rows or
%% the deadline.
queues(MaxQueues, MaxVhosts, TopN, Deadline) ->
    Spec = [{{{resource, '$1', '_', '$5'}, '$2', '$3', '$4', '_'}, [],
             [{{'$1', '$5', '$2', '$3', '$4'}}]}],
    First = case ets:info(queue_coarse_metrics, size) of
                undefined -> '$end_of_table';
                _ -> ets:select(queue_coarse_metrics, Spec, ?CHUNK)
            end,
    {{PerVhost, Top, _}, _Rows, Done} = walk(First, {#{}, [], TopN}, 0, MaxQueues, Deadline),
    Sum = fun(Key) -> maps:fold(fun(_, V, Acc) -> Acc + maps:get(Key, V) end, 0, PerVhost) end,
    Totals = #{queues => Sum(queues), ready => Sum(ready), unacked => Sum(unacked),
               total => Sum(total)},
    Sorted = lists:sort(fun({_, A}, {_, B}) -> maps:get(total, A) >= maps:get(total, B) end,
                        maps:to_list(PerVhost)),
    Kept = [{printed(V), Agg} || {V, Agg} <- lists:sublist(Sorted, MaxVhosts)],
    {Totals, maps:from_list(Kept),
     not Done orelse length(Sorted) > MaxVhosts,
     [#{vhost => printed(V), name => printed(Q), ready => R, unacked => U, total => T}
      || {T, V, Q, R, U} <- lists:reverse(Top)]}.

walk('$end_of_table', Acc, Rows, _Max, _Deadline) ->
    {Acc, Rows, true};
walk({Matches, Cont}, Acc0, Rows0, Max, Deadline) ->
    Take = lists:sublist(Matches, max(0, Max - Rows0)),
    Acc = lists:foldl(fun add_queue/2, Acc0, Take),
    Rows = Rows0 + length(Take),
    case Rows >= Max orelse length(Take) < length(Matches)
        orelse erlang:monotonic_time(millisecond) >= Deadline of
        true -> {Acc, Rows, false};
        false -> walk(ets:select(Cont), Acc, Rows, Max, Deadline)
    end.

add_queue({VHost, Name, Ready0, Unacked0, Total0}, {Acc, Top, TopN}) ->
    N = fun(X) when is_integer(X) -> X; (_) -> 0 end,
    {Ready, Unacked, Total} = {N(Ready0), N(Unacked0), N(Total0)},
    #{queues := Q, ready := R, unacked := U, total := T} =
        maps:get(VHost, Acc, #{queues => 0, ready => 0, unacked => 0, total => 0}),
    {Acc#{VHost => #{queues => Q + 1, ready => R + Ready, unacked => U + Unacked,
                     total => T + Total}},
     top({Total, VHost, Name, Ready, Unacked}, Top, TopN), TopN}.

%% The TopN queues with the most messages (and some), smallest first.
top(_, Top, 0) -> Top;
top({0, _, _, _, _}, Top, _) -> Top;
top(Q, Top, TopN) when length(Top) < TopN -> lists:sort([Q | Top]);
top({T, _, _, _, _} = Q, [{Min, _, _, _, _} | Rest], _) when T > Min -> lists:sort([Q | Rest]);
top(_, Top, _) -> Top.

counters() ->
    Overview = rabbit_global_counters:overview(),
    Groups = lists:sublist(lists:sort(maps:to_list(Overview)), ?MAX_GROUPS),
    [#{labels => maps:from_list([{K, V} || {K, V} <- Labels, is_atom(K), is_atom(V)]),
       values => maps:from_list(lists:sublist(
                                  [{K, V} || {K, V} <- lists:sort(maps:to_list(Values)),
                                             is_atom(K), is_integer(V)],
                                  ?MAX_COUNTERS))}
     || {Labels, Values} <- Groups, is_list(Labels), is_map(Values)].

cluster(Deadline) ->
    Partitions = gen_server:call(rabbit_node_monitor, partitions,
                                 beamside_plugin:call_ms(Deadline, ?CALL_MS)),
    Nodes = fun(L) -> [atom_to_binary(N, utf8) || N <- lists:sublist(L, ?MAX_NODES),
                                                  is_atom(N)] end,
    Base = #{nodes => length(rabbit_nodes:all()),
             running => length(rabbit_nodes:all_running()),
             partitions => Nodes(Partitions)},
    case beamside_agent:safe(fun() -> rabbit_nodes:cluster_name() end) of
        Name when is_binary(Name) -> Base#{name => beamside_agent:truncate(Name, ?NAME_BYTES)};
        _ -> Base
    end.

vhosts_down(MaxVhosts) ->
    case length(rabbit_vhost:list_names()) > MaxVhosts of
        true -> {error, too_many_vhosts};
        false -> [printed(V) || V <- rabbit_vhost_sup_sup:check()]
    end.

printed(VHost) when is_binary(VHost) -> beamside_agent:truncate(VHost, ?NAME_BYTES);
printed(Other) -> beamside_plugin:printed(Other, ?NAME_BYTES).
