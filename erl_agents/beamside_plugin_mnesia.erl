%%% ===========================================================================
%%% beamside_plugin_mnesia -- mnesia: locks, transactions, tables, nodes.
%%% ===========================================================================
%%%
%%% Applies when the mnesia application runs.  Runs in a process bounded by
%%% plugin_timeout_ms (see beamside_plugin).  When mnesia is not (or not yet)
%%% running, only `is_running' is reported.
%%%
%%%   is_running          yes | no | starting | stopping
%%%   held_locks          size of mnesia_locker's held-locks table
%%%   lock_queue          size of its lock-queue table
%%%   transactions        #{participants, coordinators}: transactions this node
%%%                       takes part in / coordinates (mnesia_tm:get_info/1,
%%%                       1 s limit)
%%%   transaction_commits, transaction_failures, transaction_restarts,
%%%   transaction_log_writes
%%%                       totals since mnesia started
%%%   db_nodes, running_db_nodes
%%%                       counts (plus the names, bounded like tables)
%%%   tables              #{Table => #{storage_type, size, memory_bytes}} for
%%%                       at most max_tables (1000) tables with a local
%%%                       copy; tables without one have storage_type unknown
%%%                       and no size (never a remote call).
%%%
%%% Cost: ETS info and mnesia's own counters; one message round trip to
%%% mnesia_tm; per table two table_info lookups (local ETS reads).
%%% ===========================================================================
-module(beamside_plugin_mnesia).
-behaviour(beamside_plugin).

-export([name/0, applies/1, collect/1]).

-spec name() -> atom().
name() -> mnesia.

-spec applies([atom()]) -> boolean().
applies(Apps) -> lists:member(mnesia, Apps).

-spec collect(map()) -> map().
collect(Opts) ->
    case mnesia:system_info(is_running) of
        yes -> running(Opts);
        Other -> #{is_running => Other}
    end.

running(Opts) ->
    S = fun beamside_agent:safe/1,
    Max = beamside_agent:int_opt(max_tables, Opts, 1000, {0, 1000000}),
    Wordsize = erlang:system_info(wordsize),
    DbNodes = mnesia:system_info(db_nodes),
    Running = mnesia:system_info(running_db_nodes),
    Tables = mnesia:system_info(tables),
    #{is_running => yes,
      held_locks => ets_size(mnesia_held_locks),
      lock_queue => ets_size(mnesia_lock_queue),
      transactions => S(fun tm_info/0),
      transaction_commits => mnesia:system_info(transaction_commits),
      transaction_failures => mnesia:system_info(transaction_failures),
      transaction_restarts => mnesia:system_info(transaction_restarts),
      transaction_log_writes => mnesia:system_info(transaction_log_writes),
      db_nodes => length(DbNodes),
      running_db_nodes => length(Running),
      db_node_names => lists:sublist(DbNodes, Max),
      running_db_node_names => lists:sublist(Running, Max),
      tables_truncated => length(Tables) > Max,
      tables => maps:from_list([{T, S(fun() -> table(T, Wordsize) end)}
                                || T <- lists:sublist(Tables, Max)])}.

tm_info() ->
    case mnesia_tm:get_info(1000) of
        {info, Part, Coord} -> #{participants => length(Part), coordinators => length(Coord)};
        Other -> error({mnesia_tm, Other})
    end.

ets_size(Tab) ->
    case ets:info(Tab, size) of
        N when is_integer(N) -> N;
        _ -> 0
    end.

table(T, Wordsize) ->
    case mnesia:table_info(T, storage_type) of
        unknown ->
            #{storage_type => unknown};
        Type ->
            Mem = mnesia:table_info(T, memory),
            Bytes = case Type of
                        disc_only_copies -> Mem;            % dets: bytes
                        _ when is_integer(Mem) -> Mem * Wordsize;   % ets: words
                        _ -> 0
                    end,
            #{storage_type => storage(Type),
              size => mnesia:table_info(T, size),
              memory_bytes => Bytes}
    end.

storage(T) when is_atom(T) -> T;
storage({ext, Alias, _Mod}) when is_atom(Alias) -> Alias;
storage(_) -> ext.
