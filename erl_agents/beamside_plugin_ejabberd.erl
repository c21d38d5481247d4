%%% ===========================================================================
%%% beamside_plugin_ejabberd -- ejabberd: sessions, users, s2s, queues.
%%% ===========================================================================
%%%
%%% Applies when the ejabberd application runs (tested with Debian's 23.01).
%%% Runs in a process bounded by plugin_timeout_ms (see beamside_plugin).
%%% Tables, process_info and one supervisor:count_children/1 (of the s2s
%%% connections' supervisor) are read; nothing builds the session list
%%% (ejabberd_sm:connected_users/0 does, and its counters build it too).
%%%
%%%   version      ejabberd's application version (binary)
%%%   sessions     c2s sessions on the node: the size of the mnesia session
%%%                table (the default sm backend; {error, {backend, B}}
%%%                for another one)
%%%   hosts        #{Host => #{sessions, users}} for at most max_vhosts (50)
%%%                virtual hosts: sessions counted in the session table
%%%                while it has at most max_rows (100,000) rows
%%%                (ets:select_count, in C), registered users as ejabberd
%%%                counts them (reg_users_counter, internal auth); a count
%%%                left out is absent
%%%   hosts_truncated  true when there are more hosts
%%%   s2s          #{outgoing, incoming}: server-to-server connections (the
%%%                s2s table's size; the incoming connection processes'
%%%                supervisor's child count)
%%%   queues       #{Name => message_queue_len} of ejabberd's central
%%%                processes (ejabberd_router, ejabberd_sm, ejabberd_local,
%%%                ejabberd_s2s, ejabberd_hooks) that run
%%%   cluster_nodes  ejabberd's cluster members as mnesia sees them
%%%
%%% ejabberd raises its own alarms with SASL's alarm_handler
%%% (ejabberd_system_monitor): they come through the alarms section.
%%% ===========================================================================
-module(beamside_plugin_ejabberd).
-behaviour(beamside_plugin).

-export([name/0, applies/1, collect/1]).

-define(NAME_BYTES, 200).
-define(QUEUES, [ejabberd_router, ejabberd_sm, ejabberd_local, ejabberd_s2s, ejabberd_hooks]).

-spec name() -> atom().
name() -> ejabberd.

-spec applies([atom()]) -> boolean().
applies(Apps) -> lists:member(ejabberd, Apps).

-spec collect(map()) -> map().
collect(Opts) ->
    MaxHosts = beamside_agent:int_opt(max_vhosts, Opts, 50, {0, 10000}),
    MaxRows = beamside_agent:int_opt(max_rows, Opts, 100000, {0, 100000000}),
    S = fun beamside_agent:safe/1,
    Hosts = case S(fun hosts/0) of
                L when is_list(L) -> L;
                _ -> []
            end,
    Base = #{sessions => S(fun sessions/0),
             hosts => S(fun() -> per_host(lists:sublist(Hosts, MaxHosts), MaxRows) end),
             hosts_truncated => length(Hosts) > MaxHosts,
             s2s => S(fun s2s/0),
             queues => S(fun queues/0),
             cluster_nodes => S(fun() -> length(mnesia:system_info(running_db_nodes)) end)},
    beamside_plugin:with_version(ejabberd, Base).

hosts() ->
    case erlang:function_exported(ejabberd_option, hosts, 0) of
        true -> ejabberd_option:hosts();
        false -> ejabberd_config:get_myhosts()  % before 20.x
    end.

sessions() ->
    case ets:info(session, size) of
        N when is_integer(N) -> N;
        undefined -> {error, {backend, sm_backend()}}
    end.

sm_backend() ->
    try ejabberd_option:sm_db_type() catch _:_ -> unknown end.

%% Rows of Table whose `us' field ({User, Server}) names Host, counted in C,
%% or absent when the table is not there or over MaxRows.
count_by_host(Table, Host, MaxRows) ->
    case ets:info(Table, size) of
        N when is_integer(N), N =< MaxRows ->
            Attrs = mnesia:table_info(Table, attributes),
            case index_of(us, Attrs, 2) of
                none ->
                    [];
                Pos ->
                    Pattern = setelement(Pos, erlang:make_tuple(length(Attrs) + 1, '_'),
                                         {'_', Host}),
                    [ets:select_count(Table, [{Pattern, [], [true]}])]
            end;
        _ ->
            []
    end.

index_of(_, [], _) -> none;
index_of(X, [X | _], I) -> I;
index_of(X, [_ | T], I) -> index_of(X, T, I + 1).

per_host(Hosts, MaxRows) ->
    maps:from_list(
      [{beamside_agent:truncate(Host, ?NAME_BYTES),
        maps:from_list([{sessions, N} || N <- safe_count(session, Host, MaxRows)]
                       ++ [{users, N} || N <- users(Host)])}
       || Host <- Hosts, is_binary(Host)]).

%% ejabberd's own count of a host's registered users (internal auth keeps
%% it in a RAM table; its passwd table is on disk and is not walked).
users(Host) ->
    case beamside_agent:safe(fun() -> ets:lookup(reg_users_counter, Host) end) of
        [{reg_users_counter, Host, N}] when is_integer(N) -> [N];
        _ -> []
    end.

safe_count(Table, Host, MaxRows) ->
    case beamside_agent:safe(fun() -> count_by_host(Table, Host, MaxRows) end) of
        L when is_list(L) -> L;
        _ -> []
    end.

s2s() ->
    Out = case ets:info(s2s, size) of
              N when is_integer(N) -> #{outgoing => N};
              _ -> #{}
          end,
    case whereis(ejabberd_s2s_in_sup) of
        undefined ->
            Out;
        Sup ->
            case supervisor:count_children(Sup) of
                Counts when is_list(Counts) ->
                    Out#{incoming => proplists:get_value(active, Counts, 0)};
                _ ->
                    Out
            end
    end.

queues() ->
    maps:from_list(
      [{Name, Len} || Name <- ?QUEUES, is_pid(Pid = whereis(Name)),
                      {message_queue_len, Len} <- [process_info(Pid, message_queue_len)]]).
