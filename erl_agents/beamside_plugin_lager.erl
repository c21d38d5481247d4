%%% ===========================================================================
%%% beamside_plugin_lager -- lager: is it logging synchronously (overloaded)?
%%% ===========================================================================
%%%
%%% Applies when the lager application runs (tested with Debian's 3.9).  Reads
%%% lager's own state, no call to a lager process:
%%%
%%%   version           lager's application version (binary)
%%%   sync_mode         true when lager's backend throttle switched its
%%%                     default sink to synchronous logging: its event queue
%%%                     went over async_threshold, every logging process now
%%%                     waits for the backends (lager_config, {lager_event,
%%%                     async})
%%%   event_queue       messages waiting in the lager_event manager
%%%   error_logger_hwm  lager's limit of redirected error_logger messages a
%%%                     second (more are dropped by lager), when set
%%%
%%% beamside's own backend counts what it drops when its forwarder is full
%%% (the events' lager_queue_full drops).
%%% ===========================================================================
-module(beamside_plugin_lager).
-behaviour(beamside_plugin).

-export([name/0, applies/1, collect/1]).

-spec name() -> atom().
name() -> lager.

-spec applies([atom()]) -> boolean().
applies(Apps) -> lists:member(lager, Apps).

-spec collect(map()) -> map().
collect(_Opts) ->
    S = fun beamside_agent:safe/1,
    Base = #{sync_mode => S(fun() -> lager_config:get({lager_event, async}, true) =:= false end),
             event_queue => S(fun() -> queue_len(whereis(lager_event)) end)},
    WithHwm = case application:get_env(lager, error_logger_hwm) of
                  {ok, Hwm} when is_integer(Hwm) -> Base#{error_logger_hwm => Hwm};
                  _ -> Base
              end,
    beamside_plugin:with_version(lager, WithHwm).

queue_len(undefined) ->
    not_running;
queue_len(Pid) ->
    case process_info(Pid, message_queue_len) of
        {message_queue_len, N} -> N;
        undefined -> not_running
    end.
