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
%%%   memory_view    os_mon | unavailable | #{source, limit_bytes,
%%%                  used_bytes, total_bytes, available_bytes, free_bytes,
%%%                  swap_total_bytes, swap_free_bytes, cgroup}: the node's
%%%                  own view of its memory when os_mon's memsup does not run
%%%                  (`os_mon' when it does: see plugins.os_mon; `unavailable'
%%%                  on other OSes than Linux).  total/available/free/swap
%%%                  from /proc/meminfo (at most 64 KB read; available is
%%%                  MemAvailable, or MemFree + Buffers + Cached on kernels
%%%                  without it).  cgroup => none | {error, R} | #{version
%%%                  (1 | 2), path, limit_bytes (integer() | max),
%%%                  usage_bytes, inactive_file_bytes}: the node's memory
%%%                  cgroup -- v1 where the memory controller is on a v1
%%%                  hierarchy (hybrid hosts), else v2 -- whose directory is
%%%                  the hierarchy's mount point (/proc/self/mountinfo, at
%%%                  most 1 MB read) plus the node's path (/proc/self/cgroup)
%%%                  less the mount's root (a container's cgroup namespace or
%%%                  bind mount), else the mount point itself; found once per
%%%                  attach (beamside_sysmon:cached/2: a node moved to another
%%%                  cgroup is seen at the next attach).  v1: limit =
%%%                  lower of memory.limit_in_bytes and memory.stat
%%%                  hierarchical_memory_limit (ancestors), usage =
%%%                  memory.usage_in_bytes, inactive file = total_inactive_file;
%%%                  v2: limit = lowest memory.max of the cgroup and its
%%%                  ancestors up to the mount, usage = memory.current,
%%%                  inactive file = memory.stat inactive_file.  An unlimited
%%%                  v1 cgroup (LONG_MAX) reads as max.
%%%                  source/limit_bytes/used_bytes: cgroup_v1 | cgroup_v2
%%%                  when the cgroup's limit is below MemTotal (used = usage
%%%                  less inactive file cache, as the kernel's reclaim and OOM
%%%                  killer count it), else meminfo (limit MemTotal, used
%%%                  MemTotal - MemAvailable).
%%%   disk_view      os_mon | unavailable | {error, R} | #{source => df,
%%%                  path, dir_source, mount, total_bytes, used_bytes,
%%%                  available_bytes, capacity, age_ms}: the file system of
%%%                  the node's data directory when os_mon's disksup does not
%%%                  run (`os_mon' when it does; `unavailable' off Unix).
%%%                  The directory (dir_source): mnesia's (mnesia:system_info(
%%%                  directory), when mnesia_monitor runs; RabbitMQ's
%%%                  RABBITMQ_MNESIA_DIR) or the node's working directory
%%%                  (prim_file:get_cwd/0) -- one that does not exist stands
%%%                  for its nearest existing parent.  There is no statvfs in
%%%                  Erlang: `df -P -k Dir' (LC_ALL=C) runs through a port
%%%                  (spawn_executable /bin/df or /usr/bin/df: no shell) owned
%%%                  by a helper process (beamside_agent:run_bounded/3): 1 s
%%%                  time limit, at most 64 KB of output; the helper is killed
%%%                  at the limit, which closes the port (a df stuck in the
%%%                  kernel, e.g. on a dead NFS server, stays an OS process
%%%                  until the kernel lets it go, as disksup's would).  The
%%%                  result -- an error too -- is kept in beamside_sysmon's
%%%                  table with its time and directory, and df runs again only
%%%                  when it is older than Opts disk_view_interval_ms (60000;
%%%                  1000..3600000) or the directory changed; age_ms says how
%%%                  old it is.  Not attached (no table): df at each call.
%%%                  capacity: percent used as df counts it, unrounded:
%%%                  used / (used + available), reserved blocks left out.
%%%                  A failure (no df, df exits non-zero, timeout, cwd gone)
%%%                  is {error, Reason}; nothing is logged.
%%%
%%% Cost: ETS reads (sasl, mnesia, old code ages; a write when an age
%%% starts), a sort of the old-code list and an md5 lookup per module with
%%% old code, a list_dir
%%% and a stat per history file when the history is enabled: about 100 us.
%%% memory_view: /proc/meminfo and four small cgroup files read, about
%%% 0.4 ms (plus 0.2 ms for /proc/self/mountinfo once per attach, or at each
%%% call when not attached).  disk_view: an ETS read and write, and once per
%%% disk_view_interval_ms a df: about 4 ms of wall time for the collect that
%%% runs it, of which about 0.2 ms CPU on the node (the fork and exec are
%%% erl_child_setup's, the rest is df's own process).  Measured on a 2-core
%%% VM, OTP 25.
%%% ===========================================================================
-module(beamside_alarms).

-export([section/2]).

-define(MAX_ALARMS, 100).
-define(SYNC_MS, 500).
-define(MAX_OLD_CODE, 100).
-define(MAX_OLD_CODE_AGES, 1000).
-define(MAX_OLD_CODE_TRACKED, 10000).
-define(MAX_HISTORY_FILES, 1000).
-define(MAX_PROC_READ, 65536).
-define(MAX_MOUNTINFO, 1048576).
-define(DF_EVERY_MS, 60000).        % df at most this often (disk_view_interval_ms)
-define(DF_MS, 1000).               % time limit of one df
-define(DF_MAX_OUTPUT, 65536).
-define(MAX_PATH, 512).
-define(ENSURE_MS, 3000).
-define(CALL_MS, 1000).

-spec section(map(), map()) -> map().
section(Opts, Ctx) ->
    S = fun beamside_agent:safe/1,
    #{sasl => S(fun sasl/0),
      mnesia => S(fun mnesia/0),
      old_code => S(fun() -> old_code(maps:get(old_code, Ctx, [])) end),
      shell_history => S(fun shell_history/0),
      memory_view => S(fun memory_view/0),
      disk_view => S(fun() -> disk_view(Opts) end)}.

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
    %% set_alarm is a gen_event notify: a call through alarm_handler (any
    %% answer will do, at most ?SYNC_MS) returns once it has handled what it
    %% was sent before, so the rows our handler forwarded are on their way to
    %% beamside_sysmon, which stores them before it answers below.
    _ = (catch gen_event:call(alarm_handler, beamside_alarm_handler, sync, ?SYNC_MS)),
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
%% one view old_code_seen, #{Module => {CurrentMd5 | undefined, FirstMs}},
%% in beamside_sysmon's table (beamside_sysmon:put_view/2), rewritten only
%% when it changes.
old_code_ages(Mods) ->
    case ets:info(beamside_sysmon, owner) of
        undefined ->
            not_attached;
        _ ->
            Now = erlang:monotonic_time(millisecond),
            Prev = case beamside_sysmon:view(old_code_seen) of
                       P when is_map(P) -> P;
                       _ -> #{}
                   end,
            Seen = maps:from_list([{M, seen(M, maps:find(M, Prev), Now)}
                                   || M <- lists:sublist(Mods, ?MAX_OLD_CODE_TRACKED)]),
            _ = Seen =:= Prev orelse beamside_sysmon:put_view(old_code_seen, Seen),
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
        {Pid, _} when is_pid(Pid) -> os_mon;
        {undefined, {unix, linux}} -> linux_memory();
        _ -> unavailable
    end.

linux_memory() ->
    Info = meminfo(read_limited("/proc/meminfo", ?MAX_PROC_READ)),
    Total = case Info of
                #{total_bytes := T} when T > 0 -> T;
                _ -> error(no_memtotal)
            end,
    %% MemAvailable since Linux 3.14; before, what memsup also counts.
    Available = case Info of
                    #{available_bytes := A} -> A;
                    _ -> maps:get(free_bytes, Info, 0) + maps:get(buffers_bytes, Info, 0)
                             + maps:get(cached_bytes, Info, 0)
                end,
    Host = maps:without([buffers_bytes, cached_bytes], Info#{available_bytes => Available}),
    Cgroup = beamside_agent:safe(fun cgroup_memory/0),
    case Cgroup of
        #{version := V, limit_bytes := Limit, usage_bytes := Usage,
          inactive_file_bytes := Inactive} when is_integer(Limit), Limit < Total ->
            Host#{source => cgroup_source(V), limit_bytes => Limit,
                  used_bytes => max(0, Usage - Inactive), cgroup => Cgroup};
        _ ->
            Host#{source => meminfo, limit_bytes => Total,
                  used_bytes => max(0, Total - Available), cgroup => Cgroup}
    end.

cgroup_source(1) -> cgroup_v1;
cgroup_source(2) -> cgroup_v2.

meminfo(Bin) ->
    Keys = #{<<"MemTotal">> => total_bytes,
             <<"MemAvailable">> => available_bytes,
             <<"MemFree">> => free_bytes,
             <<"Buffers">> => buffers_bytes,
             <<"Cached">> => cached_bytes,
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

%% The node's memory cgroup: none | #{version, path, limit_bytes (integer |
%% max), usage_bytes, inactive_file_bytes}.  Which directory is found once
%% per attach (beamside_sysmon:cached/2); the values are read every time.
cgroup_memory() ->
    case beamside_sysmon:cached(memory_cgroup, fun find_memory_cgroup/0) of
        none ->
            none;
        {1, Dir} ->
            %% usage_in_bytes counts the children too: so do the total_*
            %% stats; hierarchical_memory_limit is the lowest limit of the
            %% cgroup and its ancestors.
            Stat = memory_stat(Dir, [<<"hierarchical_memory_limit">>, <<"total_inactive_file">>]),
            Own = cgroup_value(Dir, <<"memory.limit_in_bytes">>),
            #{version => 1,
              path => beamside_agent:truncate(Dir, ?MAX_PATH),
              limit_bytes => lowest([Own, v1_limit(maps:get(<<"hierarchical_memory_limit">>,
                                                            Stat, max))]),
              usage_bytes => cgroup_int(Dir, <<"memory.usage_in_bytes">>),
              inactive_file_bytes => maps:get(<<"total_inactive_file">>, Stat, 0)};
        {2, Dir, Chain} ->
            Stat = memory_stat(Dir, [<<"inactive_file">>]),
            #{version => 2,
              path => beamside_agent:truncate(Dir, ?MAX_PATH),
              limit_bytes => lowest([cgroup_value(D, <<"memory.max">>) || D <- Chain]),
              usage_bytes => cgroup_int(Dir, <<"memory.current">>),
              inactive_file_bytes => maps:get(<<"inactive_file">>, Stat, 0)}
    end.

%% cgroup v1 has no "max": an unlimited cgroup reads as LONG_MAX rounded
%% down to a page.
v1_limit(N) when is_integer(N), N >= 1 bsl 62 -> max;
v1_limit(V) -> V.

lowest(Values) ->
    case [V || V <- Values, is_integer(V)] of
        [] -> max;
        Ints -> lists:min(Ints)
    end.

memory_stat(Dir, Wanted) ->
    try read_limited(<<Dir/binary, "/memory.stat">>, ?MAX_PROC_READ) of
        Bin ->
            maps:from_list(
              [{K, binary_to_integer(V)}
               || Line <- binary:split(Bin, <<"\n">>, [global, trim_all]),
                  [K, V] <- [binary:split(Line, <<" ">>)],
                  lists:member(K, Wanted)])
    catch _:_ -> #{}
    end.

cgroup_int(Dir, File) ->
    case cgroup_value(Dir, File) of
        N when is_integer(N) -> N;
        _ -> error({unreadable, File})
    end.

cgroup_value(Dir, File) ->
    try string:trim(read_limited(<<Dir/binary, "/", File/binary>>, 4096)) of
        <<"max">> -> max;
        B -> v1_limit(binary_to_integer(B))
    catch _:_ -> undefined
    end.

%% {1, Dir} (v1 memory controller: hybrid hosts have their memory there),
%% {2, Dir, [Dir and its ancestors up to the mount]} or none.  The directory
%% is the mount point of the hierarchy (/proc/self/mountinfo) plus the
%% node's path in it (/proc/self/cgroup) less the mount's root (the part
%% a container's bind mount or cgroup namespace hides); when that is not
%% readable, the mount point itself.
find_memory_cgroup() ->
    Self = try read_limited("/proc/self/cgroup", ?MAX_PROC_READ) catch _:_ -> <<>> end,
    Lines = [binary:split(L, <<":">>) || L <- binary:split(Self, <<"\n">>, [global, trim_all])],
    Paths = [{lists:member(<<"memory">>, binary:split(Ctl, <<",">>, [global])), Id, P}
             || [Id, Rest] <- Lines, [Ctl, P] <- [binary:split(Rest, <<":">>)]],
    Mounts = try mounts(read_limited("/proc/self/mountinfo", ?MAX_MOUNTINFO))
             catch _:_ -> []
             end,
    V1 = [P || {true, _, P} <- Paths],
    V2 = [P || {false, <<"0">>, P} <- Paths],
    case cgroup_dir(V1, [M || {<<"cgroup">>, Super, _, _} = M <- Mounts,
                              lists:member(<<"memory">>, binary:split(Super, <<",">>, [global]))],
                    <<"/sys/fs/cgroup/memory">>, <<"memory.usage_in_bytes">>) of
        {ok, Dir1, _} ->
            {1, Dir1};
        none ->
            case cgroup_dir(V2, [M || {<<"cgroup2">>, _, _, _} = M <- Mounts],
                            <<"/sys/fs/cgroup">>, <<"memory.current">>) of
                {ok, Dir2, MountPoint} -> {2, Dir2, chain(Dir2, MountPoint)};
                none -> none
            end
    end.

cgroup_dir([], _Mounts, _Default, _Probe) ->
    none;
cgroup_dir([Path | _], Mounts, Default, Probe) ->
    {Root, MountPoint} = case Mounts of
                             [{_, _, R, MP} | _] -> {R, MP};
                             [] -> {<<"/">>, Default}
                         end,
    Rel = case Root of
              <<"/">> -> Path;
              _ ->
                  case string:prefix(Path, Root) of
                      nomatch -> <<"/">>;
                      <<>> -> <<"/">>;
                      R1 -> R1
                  end
          end,
    Outside = binary:match(<<Rel/binary, "/">>, <<"/../">>) =/= nomatch,
    Dir = case Rel of
              %% "/.." paths: a cgroup outside our namespace's root
              _ when Outside -> MountPoint;
              <<"/">> -> MountPoint;
              <<"/", _/binary>> -> <<MountPoint/binary, Rel/binary>>;
              _ -> MountPoint
          end,
    Readable = fun(D) -> cgroup_value(D, Probe) =/= undefined end,
    case Readable(Dir) of
        true -> {ok, Dir, MountPoint};
        false when Dir =/= MountPoint ->
            case Readable(MountPoint) of
                true -> {ok, MountPoint, MountPoint};
                false -> none
            end;
        false -> none
    end.

%% Dir and its parents, up to (and with) the mount point: a v2 limit is the
%% lowest memory.max on the way.
chain(Dir, Stop) ->
    chain(Dir, Stop, 64, []).

chain(Dir, Stop, N, Acc) when Dir =:= Stop; N =:= 0; byte_size(Dir) =< byte_size(Stop) ->
    lists:reverse([Dir | Acc]);
chain(Dir, Stop, N, Acc) ->
    chain(filename:dirname(Dir), Stop, N - 1, [Dir | Acc]).

%% /proc/self/mountinfo lines as [{FsType, SuperOptions, Root, MountPoint}].
mounts(Bin) ->
    lists:filtermap(
      fun(Line) ->
              case string:split(Line, <<" - ">>) of
                  [Before, After] ->
                      case {binary:split(Before, <<" ">>, [global, trim_all]),
                            binary:split(After, <<" ">>, [global, trim_all])} of
                          {[_Id, _Parent, _Dev, Root, MountPoint | _], [Type, _Src, Super | _]} ->
                              {true, {Type, Super, unescape(Root), unescape(MountPoint)}};
                          _ ->
                              false
                      end;
                  _ ->
                      false
              end
      end, binary:split(Bin, <<"\n">>, [global, trim_all])).

%% mountinfo writes space, tab, newline and backslash as \ooo.
unescape(Bin) ->
    unescape(Bin, <<>>).

unescape(<<$\\, A, B, C, Rest/binary>>, Acc)
  when A >= $0, A =< $3, B >= $0, B =< $7, C >= $0, C =< $7 ->
    unescape(Rest, <<Acc/binary, ((A - $0) * 64 + (B - $0) * 8 + (C - $0))>>);
unescape(<<X, Rest/binary>>, Acc) ->
    unescape(Rest, <<Acc/binary, X>>);
unescape(<<>>, Acc) ->
    Acc.

%%% ---------------------------------------------------------------------------
%%% the node's own view of the disk of its data directory

disk_view(Opts) ->
    case {whereis(disksup), os:type()} of
        {Pid, _} when is_pid(Pid) -> os_mon;
        {undefined, {unix, _}} -> df_view(Opts);
        _ -> unavailable
    end.

%% df at most every disk_view_interval_ms while attached: the last result
%% (an error too) is kept in beamside_sysmon's table with the time and the
%% directory it is for.  Not attached: df at each call.
df_view(Opts) ->
    Every = beamside_agent:int_opt(disk_view_interval_ms, Opts, ?DF_EVERY_MS,
                                   {1000, 3600000}),
    {DirSource, Dir} = data_dir(),
    Now = erlang:monotonic_time(millisecond),
    case beamside_sysmon:swap_sample(disk_view, undefined) of
        {At, Dir, View} = Entry when Now - At < Every ->
            _ = beamside_sysmon:swap_sample(disk_view, Entry),
            with_age(View, Now - At);
        _ ->
            View = df(Dir, DirSource),
            _ = beamside_sysmon:swap_sample(disk_view, {Now, Dir, View}),
            with_age(View, 0)
    end.

with_age(#{} = View, Age) -> View#{age_ms => Age};
with_age(Error, _) -> Error.

%% {mnesia, Dir} when mnesia runs (RabbitMQ: RABBITMQ_MNESIA_DIR), else
%% {cwd, Cwd}; a directory that does not exist (yet) stands for its nearest
%% existing parent, whose file system it would be on.
data_dir() ->
    Cwd = case prim_file:get_cwd() of
              {ok, C} -> C;
              {error, R} -> error({cwd, R})
          end,
    Mnesia = case whereis(mnesia_monitor) of
                 undefined -> undefined;
                 _ -> try mnesia:system_info(directory) catch _:_ -> undefined end
             end,
    case Mnesia of
        [_ | _] -> {mnesia, existing(filename:absname(Mnesia, Cwd), 64)};
        _ -> {cwd, Cwd}
    end.

existing(Dir, 0) ->
    Dir;
existing(Dir, N) ->
    case prim_file:read_file_info(Dir) of
        {ok, _} -> Dir;
        _ ->
            case filename:dirname(Dir) of
                Dir -> Dir;
                Parent -> existing(Parent, N - 1)
            end
    end.

df(Dir, DirSource) ->
    Exe = case beamside_sysmon:cached(df_path, fun find_df/0) of
              false -> error(no_df);
              E -> E
          end,
    case beamside_agent:run_bounded(fun() -> run_df(Exe, Dir) end, ?DF_MS, []) of
        {ok, Out} ->
            Base = #{source => df,
                     path => beamside_agent:truncate(beamside_agent:to_bin(Dir), ?MAX_PATH),
                     dir_source => DirSource},
            maps:merge(Base, parse_df(Out));
        {error, {error, R}} ->
            {error, R};
        {error, _} = Error ->
            Error
    end.

find_df() ->
    Fixed = [F || F <- ["/bin/df", "/usr/bin/df"],
                  element(1, prim_file:read_file_info(F)) =:= ok],
    case Fixed of
        [F | _] -> F;
        [] -> os:find_executable("df")
    end.

%% In the helper process run_bounded/3 spawns: the port is linked to it, so
%% it is closed when the helper is killed at the time limit.
run_df(Exe, Dir) ->
    Port = open_port({spawn_executable, Exe},
                     [{args, ["-P", "-k", Dir]}, {env, [{"LC_ALL", "C"}]},
                      exit_status, binary, use_stdio, stderr_to_stdout]),
    df_output(Port, <<>>).

df_output(Port, Acc) ->
    receive
        {Port, {data, Data}} when byte_size(Acc) + byte_size(Data) > ?DF_MAX_OUTPUT ->
            catch port_close(Port),
            error(df_output_too_large);
        {Port, {data, Data}} ->
            df_output(Port, <<Acc/binary, Data/binary>>);
        {Port, {exit_status, 0}} ->
            Acc;
        {Port, {exit_status, Status}} ->
            [First | _] = binary:split(<<Acc/binary, "\n">>, <<"\n">>),
            error({df_exit, Status, beamside_agent:truncate(First, 200)})
    end.

%% `df -P -k': a header, then "Filesystem 1024-blocks Used Available
%% Capacity Mounted-on" on one line.  Read from the capacity column ("23%"),
%% so that a mount point with spaces stays whole.
parse_df(Out) ->
    Rows = [binary:split(L, [<<" ">>, <<"\t">>], [global, trim_all])
            || L <- binary:split(Out, <<"\n">>, [global, trim_all])],
    Parsed = [R || Row <- Rows, R <- [df_row(Row)], is_map(R)],
    case lists:reverse(Parsed) of
        [Last | _] -> Last;
        [] -> error({df_output, beamside_agent:truncate(Out, 200)})
    end.

df_row(Row) ->
    case lists:splitwith(fun(T) -> not is_percent(T) end, Row) of
        {Before, [_Cap | MountParts]} when length(Before) >= 4, MountParts =/= [] ->
            [Avail, Used, Blocks | _] = lists:reverse(Before),
            try {binary_to_integer(Blocks), binary_to_integer(Used), binary_to_integer(Avail)} of
                {B, U, A} ->
                    Mount = iolist_to_binary(lists:join(<<" ">>, MountParts)),
                    #{mount => beamside_agent:truncate(Mount, ?MAX_PATH),
                      total_bytes => B * 1024,
                      used_bytes => U * 1024,
                      available_bytes => A * 1024,
                      %% what df prints, unrounded: the share of the space a
                      %% user can have (reserved blocks left out) in use
                      capacity => case U + A of
                                      0 -> 0.0;
                                      S -> U * 100 / S
                                  end}
            catch error:badarg -> false
            end;
        _ ->
            false
    end.

is_percent(T) ->
    case binary:last(T) of
        $% -> byte_size(T) > 1;
        _ -> false
    end.

%% At most Max bytes of a (/proc or /sys) file, read through a raw file (no
%% file server).
read_limited(Path, Max) ->
    {ok, Fd} = file:open(Path, [read, raw, binary]),
    try read_chunks(Fd, Max, [])
    after
        file:close(Fd)
    end.

read_chunks(_Fd, Left, Acc) when Left =< 0 ->
    iolist_to_binary(lists:reverse(Acc));
read_chunks(Fd, Left, Acc) ->
    case file:read(Fd, min(Left, 65536)) of
        {ok, Bin} -> read_chunks(Fd, Left - byte_size(Bin), [Bin | Acc]);
        eof -> iolist_to_binary(lists:reverse(Acc));
        {error, R} -> error(R)
    end.
