%%% ===========================================================================
%%% beamside_alarms -- the `alarms' section: node-side data for beamside's
%%% alarm engine.
%%% ===========================================================================
%%%
%%% section(Opts, Ctx) -> map().  Each part is computed on its own: a part
%%% that fails is `{error, Reason}' and the others are still there.  Nothing
%%% here changes anything on the node, except that the first collect after
%%% sasl or mnesia started asks beamside_sysmon to install its forwarders
%%% (ensure_forwarders, at most 3 s; a no-op when they are there).
%%%
%%%   sasl           not_running (no alarm_handler) | #{count, truncated,
%%%                  alarms => [#{id, description, name, set_at_ms}]}:
%%%                  at most 100 alarms (sorted by id text); id and
%%%                  description printed with ~0tP depth 20, at most 512
%%%                  bytes each; name is the alarm id's atom (the first
%%%                  element of a tuple id, e.g. disk_almost_full) or <<>>.
%%%                  set_at_ms: when beamside saw it set (the attach time for
%%%                  alarms already set then).  Attached: read from
%%%                  beamside_sysmon's table (beamside_alarm_handler keeps
%%%                  it), no call to alarm_handler.  Not attached:
%%%                  alarm_handler:get_alarms() (1 s limit), set_at_ms
%%%                  undefined.
%%%   mnesia         not_running | not_attached | #{subscribed,
%%%                  inconsistent_database, last_inconsistent_database,
%%%                  overload, last_overload} (see beamside_sysmon): counts
%%%                  since attach; last_* is #{context, node, at_ms} /
%%%                  #{details, at_ms} or none.
%%%   old_code       #{count, modules, ages_ms}: modules with old code, the
%%%                  first 100 (sorted) of Ctx old_code (see
%%%                  beamside_vm:old_code/0), and how long each has had that
%%%                  old code: ages_ms => #{Module => Ms} (the 1000 oldest),
%%%                  or not_attached.  The age is tracked in beamside_sysmon's
%%%                  table from the first collect that saw the old code (any
%%%                  sidecar's), per module with the md5 of its current code:
%%%                  a module loaded again with different code has new old
%%%                  code (the previous old code was purged by the load), so
%%%                  its age starts again -- a module an application
%%%                  regenerates every few seconds stays young, a module
%%%                  loaded twice and left grows old.  A reload of the very
%%%                  same code between two collects is not seen (the age
%%%                  goes on).  The table goes with the last detach: after a
%%%                  sidecar restart the ages start from the new attach.
%%%   shell_history  disabled | #{path, bytes, files, truncated, exists,
%%%                  limit_bytes (when kernel shell_history_file_bytes is
%%%                  set)}: kernel shell_history =:= enabled; the directory
%%%                  (kernel shell_history_path, else filename:basedir(
%%%                  user_cache, "erlang-history")) listed, at most 1000
%%%                  entries, a file stat each (prim_file: no file server).
%%%   memory_view    os_mon | unavailable | #{total_bytes, available_bytes,
%%%                  free_bytes, swap_total_bytes, swap_free_bytes, cgroup}:
%%%                  the node's own view of system memory when os_mon's
%%%                  memsup does not run (`os_mon' when it does: see
%%%                  plugins.os_mon).  /proc/meminfo, at most 64 KB read;
%%%                  cgroup => #{max_bytes => integer() | max, current_bytes}
%%%                  from the cgroup v2 files of the node's cgroup (or the
%%%                  root of the cgroup namespace), absent when not readable.
%%%                  `unavailable' on other OSes.
%%%
%%% Cost: ETS reads (sasl, mnesia, old code ages; a write when an age
%%% starts), a sort of the old-code list and an md5 lookup per module with
%%% old code, a list_dir
%%% and a stat per history file when the history is enabled, three small
%%% /proc and /sys reads: about 100-300 us in all.
%%% ===========================================================================
-module(beamside_alarms).

-export([section/2]).

-define(MAX_ALARMS, 100).
-define(MAX_OLD_CODE, 100).
-define(MAX_OLD_CODE_AGES, 1000).
-define(MAX_OLD_CODE_TRACKED, 10000).
-define(MAX_HISTORY_FILES, 1000).
-define(MAX_PROC_READ, 65536).
-define(MAX_PATH, 512).
-define(ENSURE_MS, 3000).
-define(CALL_MS, 1000).

-spec section(map(), map()) -> map().
section(_Opts, Ctx) ->
    S = fun beamside_agent:safe/1,
    #{sasl => S(fun sasl/0),
      mnesia => S(fun mnesia/0),
      old_code => S(fun() -> old_code(maps:get(old_code, Ctx, [])) end),
      shell_history => S(fun shell_history/0),
      memory_view => S(fun memory_view/0)}.

%%% ---------------------------------------------------------------------------
%%% SASL alarm_handler

sasl() ->
    case whereis(alarm_handler) of
        undefined ->
            not_running;
        AH ->
            case beamside_sysmon:forwarders() of
                not_attached ->
                    direct();
                {AH, installed, _} ->
                    from_table();
                _ ->
                    %% sasl started (or restarted) since attach, or the
                    %% handler was removed: install it now.
                    _ = beamside_sysmon:ensure_forwarders(?ENSURE_MS),
                    case beamside_sysmon:forwarders() of
                        {AH, installed, _} -> from_table();
                        {_, {error, _} = E, _} -> E;
                        not_attached -> direct();
                        {_, Status, _} -> {error, {alarm_handler, Status}}
                    end
            end
    end.

from_table() ->
    {Count, Rows} = beamside_sysmon:sasl_alarms(?MAX_ALARMS),
    #{count => Count,
      truncated => Count > length(Rows),
      alarms => [#{id => Id, description => Desc, name => Name, set_at_ms => At}
                 || {Id, Desc, Name, At} <- Rows]}.

direct() ->
    Alarms = gen_event:call(alarm_handler, alarm_handler, get_alarms, ?CALL_MS),
    P = fun beamside_alarm_handler:print/1,
    Rows = lists:sort([case A of
                           {Id, Desc} -> {P(Id), P(Desc), name(Id)};
                           Id -> {P(Id), P([]), name(Id)}
                       end || A <- lists:sublist(Alarms, ?MAX_ALARMS)]),
    #{count => length(Alarms),
      truncated => length(Alarms) > ?MAX_ALARMS,
      alarms => [#{id => Id, description => Desc, name => Name, set_at_ms => undefined}
                 || {Id, Desc, Name} <- Rows]}.

name(Id) when is_atom(Id) -> atom_to_binary(Id, utf8);
name(Id) when is_tuple(Id), tuple_size(Id) > 0, is_atom(element(1, Id)) ->
    atom_to_binary(element(1, Id), utf8);
name(_) -> <<>>.

%%% ---------------------------------------------------------------------------
%%% mnesia

mnesia() ->
    case whereis(mnesia_subscr) of
        undefined ->
            not_running;
        MS ->
            case beamside_sysmon:forwarders() of
                not_attached ->
                    not_attached;
                {_, _, MS} ->
                    mnesia_events(true);
                _ ->
                    _ = beamside_sysmon:ensure_forwarders(?ENSURE_MS),
                    case beamside_sysmon:forwarders() of
                        not_attached -> not_attached;
                        {_, _, Subscr} -> mnesia_events(Subscr =:= MS)
                    end
            end
    end.

mnesia_events(Subscribed) ->
    {IC, IL, OC, OL} = beamside_sysmon:mnesia_events(),
    #{subscribed => Subscribed,
      inconsistent_database => IC,
      last_inconsistent_database => IL,
      overload => OC,
      last_overload => OL}.

%%% ---------------------------------------------------------------------------
%%% old code

old_code(Mods) when is_list(Mods) ->
    #{count => length(Mods),
      modules => lists:sublist(lists:sort(Mods), ?MAX_OLD_CODE),
      ages_ms => old_code_ages(Mods)};
old_code(Error) ->
    Error.

%% #{Module => Ms} since the old code of Module was first seen; the view is
%% one entry {old_code_seen, #{Module => {CurrentMd5 | undefined, FirstMs}}}
%% in beamside_sysmon's table, rewritten only when it changes.
old_code_ages(Mods) ->
    case ets:info(beamside_sysmon, owner) of
        undefined ->
            not_attached;
        _ ->
            Now = erlang:monotonic_time(millisecond),
            Prev = case ets:lookup(beamside_sysmon, old_code_seen) of
                       [{_, P}] when is_map(P) -> P;
                       _ -> #{}
                   end,
            Seen = maps:from_list([{M, seen(M, maps:find(M, Prev), Now)}
                                   || M <- lists:sublist(Mods, ?MAX_OLD_CODE_TRACKED)]),
            Seen =:= Prev orelse ets:insert(beamside_sysmon, {old_code_seen, Seen}),
            Oldest = lists:sublist(lists:keysort(2, [{M, T} || {M, {_, T}} <- maps:to_list(Seen)]),
                                   ?MAX_OLD_CODE_AGES),
            maps:from_list([{M, Now - T} || {M, T} <- Oldest])
    end.

seen(M, {ok, {Md5, _} = Same}, Now) ->
    case current_md5(M) of
        Md5 -> Same;
        New -> {New, Now}
    end;
seen(M, error, Now) ->
    {current_md5(M), Now}.

current_md5(M) ->
    try erlang:get_module_info(M, md5)
    catch error:_ -> undefined   % old code only: the module was deleted
    end.

%%% ---------------------------------------------------------------------------
%%% shell history

shell_history() ->
    case application:get_env(kernel, shell_history) of
        {ok, enabled} ->
            Dir = case application:get_env(kernel, shell_history_path) of
                      {ok, P} when is_list(P); is_binary(P) -> P;
                      _ -> filename:basedir(user_cache, "erlang-history")
                  end,
            Base = #{path => beamside_agent:truncate(beamside_agent:to_bin(Dir), ?MAX_PATH)},
            Limit = case application:get_env(kernel, shell_history_file_bytes) of
                        {ok, N} when is_integer(N) -> #{limit_bytes => N};
                        _ -> #{}
                    end,
            maps:merge(maps:merge(Base, Limit), history_dir(Dir));
        _ ->
            disabled
    end.

history_dir(Dir) ->
    case prim_file:list_dir(Dir) of
        {ok, Names} ->
            Listed = lists:sublist(Names, ?MAX_HISTORY_FILES),
            {Files, Bytes} =
                lists:foldl(fun(Name, {F, B}) ->
                                    case prim_file:read_file_info(filename:join(Dir, Name)) of
                                        {ok, Info} when element(3, Info) =:= regular ->
                                            {F + 1, B + element(2, Info)};
                                        _ ->
                                            {F, B}
                                    end
                            end, {0, 0}, Listed),
            #{exists => true, files => Files, bytes => Bytes,
              truncated => length(Names) > ?MAX_HISTORY_FILES};
        {error, enoent} ->
            #{exists => false, files => 0, bytes => 0, truncated => false};
        {error, Reason} ->
            error({list_dir, Reason})
    end.

%%% ---------------------------------------------------------------------------
%%% the node's own view of system memory

memory_view() ->
    case {whereis(memsup), os:type()} of
        {Pid, _} when is_pid(Pid) ->
            os_mon;
        {undefined, {unix, linux}} ->
            Info = meminfo(read_small("/proc/meminfo")),
            case cgroup() of
                #{} = C when map_size(C) > 0 -> Info#{cgroup => C};
                _ -> Info
            end;
        _ ->
            unavailable
    end.

meminfo(Bin) ->
    Keys = #{<<"MemTotal">> => total_bytes,
             <<"MemAvailable">> => available_bytes,
             <<"MemFree">> => free_bytes,
             <<"SwapTotal">> => swap_total_bytes,
             <<"SwapFree">> => swap_free_bytes},
    lists:foldl(
      fun(Line, Acc) ->
              case binary:split(Line, <<":">>) of
                  [K, Rest] when is_map_key(K, Keys) ->
                      case binary:split(string:trim(Rest), <<" ">>, [global, trim_all]) of
                          [N, <<"kB">>] -> Acc#{maps:get(K, Keys) => binary_to_integer(N) * 1024};
                          [N] -> Acc#{maps:get(K, Keys) => binary_to_integer(N)};
                          _ -> Acc
                      end;
                  _ ->
                      Acc
              end
      end, #{}, binary:split(Bin, <<"\n">>, [global, trim_all])).

%% cgroup v2: memory.max and memory.current of the node's cgroup.  Which
%% directory holds them is found once per attach (beamside_sysmon:cached/2).
cgroup() ->
    case beamside_sysmon:cached(cgroup_dir, fun cgroup_dir/0) of
        none -> #{};
        Dir -> maps:filter(fun(_, V) -> V =/= undefined end,
                           #{max_bytes => cgroup_value(Dir, <<"memory.max">>),
                             current_bytes => cgroup_value(Dir, <<"memory.current">>)})
    end.

%% The node's cgroup from /proc/self/cgroup ("0::/path"), else the root of
%% the (namespaced) hierarchy; none when neither has the memory files.
cgroup_dir() ->
    Paths = try
                Self = read_small("/proc/self/cgroup"),
                [<<"/sys/fs/cgroup", P/binary>>
                 || <<"0::", P0/binary>> <- binary:split(Self, <<"\n">>, [global, trim_all]),
                    P <- [string:trim(P0)], P =/= <<"/">>]
            catch _:_ -> []
            end ++ [<<"/sys/fs/cgroup">>],
    case [D || D <- Paths, cgroup_value(D, <<"memory.current">>) =/= undefined] of
        [Dir | _] -> Dir;
        [] -> none
    end.

cgroup_value(Dir, File) ->
    try string:trim(read_small(<<Dir/binary, "/", File/binary>>)) of
        <<"max">> -> max;
        B -> binary_to_integer(B)
    catch _:_ -> undefined
    end.

%% At most ?MAX_PROC_READ bytes of a (/proc or /sys) file.
read_small(Path) ->
    {ok, Fd} = file:open(Path, [read, raw, binary]),
    try file:read(Fd, ?MAX_PROC_READ) of
        {ok, Bin} -> Bin;
        eof -> <<>>;
        {error, R} -> error(R)
    after
        file:close(Fd)
    end.
