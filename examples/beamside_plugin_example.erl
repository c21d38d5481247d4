%%% ===========================================================================
%%% beamside_plugin_example -- a complete beamside plugin, to copy.
%%% ===========================================================================
%%%
%%% Reports the mailbox and memory of a few servers every OTP node runs
%%% (code_server, application_controller, logger, rex), and how many of
%%% them are registered.  Build and use it:
%%%
%%%   erlc -o /etc/beamside/plugins examples/beamside_plugin_example.erl
%%%   # beamside.yaml:  plugins: {directory: /etc/beamside/plugins}
%%%
%%% beamside loads the .beam on every node it attaches to (no restart, OTP 25
%%% or later: compile with the oldest OTP you run), calls collect/1 at every
%%% collect in a process it kills after plugin_timeout_ms, and removes the
%%% module when it detaches.  The section below becomes (node labels left out):
%%%
%%%   erlang_plugin_example_registered 4
%%%   erlang_plugin_example_process_message_queue_len{process="code_server"} 0
%%%   erlang_plugin_example_process_memory_bytes{process="code_server"} 142512
%%%
%%% The rules (README, "Your own plugin"): the module is named
%%% beamside_plugin_<name> and implements the beamside_plugin behaviour;
%%% numbers become gauges named after the atom keys leading to them; a map
%%% keyed by binaries gives a label named after the key holding it; keep
%%% every list and map bounded, call nothing that can block for long, and
%%% never log above info.
%%% ===========================================================================
-module(beamside_plugin_example).
-behaviour(beamside_plugin).

-export([name/0, applies/1, collect/1]).

-define(SERVERS, [code_server, application_controller, logger, rex]).

%% The key of the section under `plugins' (and the `example' in the names).
-spec name() -> atom().
name() -> example.

%% Whether there is anything to say on this node: here, always.  Cheap, and
%% never a call to another process.
-spec applies([atom()]) -> boolean().
applies(_RunningApps) -> true.

%% process_info/2 of a registered process: no message is sent, and a
%% process that is gone is simply left out.
-spec collect(map()) -> map().
collect(_Opts) ->
    Found = [{Name, Pid} || Name <- ?SERVERS, is_pid(Pid = whereis(Name))],
    #{registered => length(Found),
      process => maps:from_list(
                   [{atom_to_binary(Name, utf8),
                     #{message_queue_len => Len, memory_bytes => Mem}}
                    || {Name, Pid} <- Found,
                       [{message_queue_len, Len}, {memory, Mem}]
                           <- [process_info(Pid, [message_queue_len, memory])]])}.
