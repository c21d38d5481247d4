%%% ===========================================================================
%%% beamside_plugin -- the behaviour of a beamside plugin, and the built-ins.
%%% ===========================================================================
%%%
%%% A plugin is one module, named beamside_plugin_<something>, that reports
%%% on one OTP application (or library) when it runs on the node:
%%%
%%%   name() -> atom()
%%%       The key of its section under `plugins' in the snapshot.
%%%   applies(RunningApps :: [atom()]) -> boolean()
%%%       Whether it has anything to say on this node (usually: its
%%%       application is running).  Must be cheap and must not call other
%%%       processes.
%%%   collect(Opts :: map()) -> map()
%%%       Its section.  It runs in a fresh process killed after
%%%       Opts plugin_timeout_ms (2000), so it may call servers; anything it
%%%       raises becomes `{error, Reason}' for its section only.  It gets
%%%       collect/1's Opts and must bound every list it returns (the built-in
%%%       ones take max_tables / max_disks).  Return numbers where you can:
%%%       the sidecar turns them into metrics, the reply crosses the wire at
%%%       every tick.
%%%
%%% Helpers for plugins (exported here so that each plugin stays small):
%%%   deadline(Opts)         when the plugin's calls must be done: half of
%%%                          plugin_timeout_ms from now (monotonic ms), the
%%%                          other half left to build the section
%%%   call_ms(Deadline, Max) a timeout for one call: at most Max, at least 1,
%%%                          and no later than Deadline
%%%   with_version(App, Map) Map with version => App's version, when known
%%%   printed(Term, Bytes)   a name as the node prints it, at most Bytes
%%%
%%% Built-in plugins are listed in builtin/0.  A user plugin is loaded by the
%%% sidecar like ours and named in collect/1's `extra_plugins' option.
%%% Plugins can be switched per node with collect/1's `plugins' option.
%%% ===========================================================================
-module(beamside_plugin).

-export([builtin/0, deadline/1, call_ms/2, with_version/2, printed/2]).

-callback name() -> atom().
-callback applies(RunningApps :: [atom()]) -> boolean().
-callback collect(Opts :: map()) -> map().

-spec builtin() -> [module()].
builtin() ->
    [beamside_plugin_os_mon, beamside_plugin_mnesia, beamside_plugin_poolboy,
     beamside_plugin_folsom, beamside_plugin_ranch, beamside_plugin_rabbitmq,
     beamside_plugin_ejabberd, beamside_plugin_yaws, beamside_plugin_lager].

-spec deadline(map()) -> integer().
deadline(Opts) ->
    Budget = beamside_agent:int_opt(plugin_timeout_ms, Opts, 2000, {10, 60000}) div 2,
    erlang:monotonic_time(millisecond) + Budget.

-spec call_ms(integer(), pos_integer()) -> pos_integer().
call_ms(Deadline, Max) ->
    max(1, min(Max, Deadline - erlang:monotonic_time(millisecond))).

-spec with_version(atom(), map()) -> map().
with_version(App, Map) ->
    case application:get_key(App, vsn) of
        {ok, Vsn} -> Map#{version => beamside_agent:to_bin(Vsn)};
        undefined -> Map
    end.

-spec printed(term(), pos_integer()) -> binary().
printed(Name, Bytes) when is_atom(Name) -> beamside_agent:truncate(atom_to_binary(Name, utf8), Bytes);
printed(Name, Bytes) when is_binary(Name) -> beamside_agent:truncate(Name, Bytes);
printed(Name, Bytes) ->
    Text = case unicode:characters_to_binary(io_lib:format("~0tP", [Name, 10])) of
               B when is_binary(B) -> B;
               _ -> iolist_to_binary(io_lib:format("~0P", [Name, 10]))
           end,
    beamside_agent:truncate(Text, Bytes).
