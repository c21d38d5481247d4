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
%%% Built-in plugins are listed in builtin/0.  A user plugin is loaded by the
%%% sidecar like ours and named in collect/1's `extra_plugins' option.
%%% Plugins can be switched per node with collect/1's `plugins' option.
%%% ===========================================================================
-module(beamside_plugin).

-export([builtin/0]).

-callback name() -> atom().
-callback applies(RunningApps :: [atom()]) -> boolean().
-callback collect(Opts :: map()) -> map().

-spec builtin() -> [module()].
builtin() ->
    [beamside_plugin_os_mon, beamside_plugin_mnesia, beamside_plugin_poolboy,
     beamside_plugin_folsom, beamside_plugin_ranch].
