%%% ===========================================================================
%%% beamside_plugin_os_mon -- os_mon: cpu_sup, memsup, disksup.
%%% ===========================================================================
%%%
%%% Applies when the os_mon application runs.  Each server is asked only if
%%% it runs: os_mon can be configured without any of them (RabbitMQ and
%%% ejabberd set start_cpu_sup / start_memsup / start_disksup to false), and
%%% a part whose server is not running is the atom `not_running' -- not an
%%% error: its metrics are just absent.  A part that fails while asking a
%%% running server is `{error, Reason}' in its place; the other parts are
%%% still there.  Runs in a process bounded by plugin_timeout_ms (see
%%% beamside_plugin).
%%%
%%%   cpu     load1/load5/load15 (cpu_sup:avgN() / 256, as floats), nprocs,
%%%           and `util' (percent per mode: user, nice_user, kernel, wait,
%%%           idle, ..., and busy) since the previous collect -- only when
%%%           attached, because cpu_sup measures per calling process and
%%%           only beamside_sysmon lives long enough (see there).
%%%   memory  memsup:get_system_memory_data() (bytes: total_memory,
%%%           free_memory, system_total_memory, buffered_memory,
%%%           cached_memory, available_memory, total_swap, free_swap, ...),
%%%           memsup:get_memory_data() (total, allocated, worst_process) and
%%%           the system / process high watermarks (percent).
%%%   disk    disksup:get_disk_data(), at most max_disks (64) mounts:
%%%           [#{mount, total_kib, capacity (percent used)}] and the
%%%           almost_full_threshold (percent).  disksup answers from its last
%%%           periodic check: no df runs for us.
%%%
%%% Cost: a handful of gen_server calls to os_mon's servers, which answer
%%% from their last measurement (cpu_sup reads /proc for avg/util).
%%% ===========================================================================
-module(beamside_plugin_os_mon).
-behaviour(beamside_plugin).

-export([name/0, applies/1, collect/1]).

-spec name() -> atom().
name() -> os_mon.

-spec applies([atom()]) -> boolean().
applies(Apps) -> lists:member(os_mon, Apps).

-spec collect(map()) -> map().
collect(Opts) ->
    S = fun beamside_agent:safe/1,
    #{cpu => if_running(cpu_sup, fun() -> S(fun cpu/0) end),
      memory => if_running(memsup, fun() -> S(fun memory/0) end),
      disk => if_running(disksup, fun() -> S(fun() -> disk(Opts) end) end)}.

%% A server that is not running is not asked.  (One that stops between the
%% check and the call fails that part only: {error, _}.)
if_running(Name, Fun) ->
    case whereis(Name) of
        undefined -> not_running;
        _ -> Fun()
    end.

cpu() ->
    Load = fun(N) when is_integer(N) -> N / 256;
              (_) -> error(no_load_average)
           end,
    Base = #{load1 => Load(cpu_sup:avg1()),
             load5 => Load(cpu_sup:avg5()),
             load15 => Load(cpu_sup:avg15()),
             nprocs => cpu_sup:nprocs()},
    case beamside_sysmon:cpu_util(1000) of
        Util when is_map(Util) -> Base#{util => Util};
        _ -> Base
    end.

memory() ->
    System = maps:from_list([{K, V} || {K, V} <- memsup:get_system_memory_data(),
                                       is_integer(V)]),
    {Total, Allocated, Worst} = memsup:get_memory_data(),
    WorstBytes = case Worst of
                     {_Pid, Bytes} when is_integer(Bytes) -> Bytes;
                     _ -> 0
                 end,
    #{system => System,
      total => Total,
      allocated => Allocated,
      worst_process => WorstBytes,
      system_high_watermark => memsup:get_sysmem_high_watermark(),
      process_high_watermark => memsup:get_procmem_high_watermark()}.

disk(Opts) ->
    Max = beamside_agent:int_opt(max_disks, Opts, 64, {0, 10000}),
    Data = disksup:get_disk_data(),
    Disks = [#{mount => beamside_agent:to_bin(Id), total_kib => KiB, capacity => Cap}
             || {Id, KiB, Cap} <- lists:sublist(Data, Max), Id =/= "none"],
    #{disks => Disks,
      truncated => length(Data) > Max,
      almost_full_threshold => disksup:get_almost_full_threshold()}.
