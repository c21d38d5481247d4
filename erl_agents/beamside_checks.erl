%%% ===========================================================================
%%% beamside_checks -- the opt-in, costlier sections of a snapshot.
%%% ===========================================================================
%%%
%%% beamside_agent:collect/1 computes these only when their option is given;
%%% the sidecar asks for them every N ticks.  Read-only, like beamside_vm.
%%%
%%% startup_files(Opts, Ctx) -> #{checked, truncated, errors}
%%%   (Opts startup_files => true.)  Parses the files that would stop the
%%%   node from restarting, in a fresh process killed after
%%%   startup_files_timeout_ms (2000) + 1 s; files not reached in time make
%%%   truncated => true.  In order:
%%%     sys.config   every path of init:get_argument(config), ".config"
%%%                  added when missing: file:consult/1 must give one term,
%%%                  a list.
%%%     boot file    init:get_argument(boot) ++ ".boot" (a relative one not
%%%                  found is looked for in the root's bin directory, as
%%%                  init does): binary_to_term/1
%%%                  must give {script, {Name, Vsn}, Instructions} (atoms in
%%%                  it are created, as the boot itself would).
%%%     releases     code:root_dir()/releases/*/*.rel: file:consult/1 must
%%%                  give one {release, {Name, Vsn}, {erts, Vsn}, Apps};
%%%                  code:root_dir()/releases/RELEASES when present: one
%%%                  list.
%%%     .app files   of every running application (Ctx apps), found in
%%%                  code:lib_dir(App)/ebin, else with code:where_is_file/1:
%%%                  file:consult/1 must give [{application, App, Props}].
%%%   Bounds: at most 200 files, each at most 10 MB (a bigger one is an
%%%   error `too_large' and is not read).  errors => [#{file, kind, reason}]
%%%   (kind: config | boot | rel | releases | app; path and reason as
%%%   binaries, at most 512 / 256 bytes); checked is the
%%%   number of files looked at.  A file that cannot be found where the
%%%   node's arguments say is an error (enoent): the node would not restart.
%%%   Cost: reading and parsing those files, typically 5-50 ms.
%%%
%%% modules(Opts) -> #{module() => Md5Hex :: binary()}
%%%   (Opts modules_md5 => true.)  erlang:get_module_info(M, md5) of every
%%%   loaded module (at most 20000, beamside's own left out).  About 2 us a
%%%   module.
%%%
%%% env(Opts) -> #{{App, Key} => undefined | #{hash, text}}
%%%   (Opts env_keys => [{App, Key}], at most 100; [App, Key] lists are
%%%   accepted too.)  application:get_env/2 (an ETS read): hash is
%%%   erlang:phash2(Value), text the value printed (~0tP, depth 20, at most
%%%   512 bytes) unless env_text => false, its secrets redacted
%%%   (beamside_redact; a value whose key names a secret is the bare marker
%%%   text).
%%% ===========================================================================
-module(beamside_checks).

-export([startup_files/2, modules/1, env/1]).

-define(MAX_FILES, 200).
-define(MAX_FILE_BYTES, 10485760).
-define(MAX_MODULES, 20000).
-define(MAX_ENV_KEYS, 100).
-define(MAX_PATH, 512).
-define(MAX_REASON, 256).

%%% ---------------------------------------------------------------------------
%%% startup files

-spec startup_files(map(), map()) -> map() | {error, term()}.
startup_files(Opts, Ctx) ->
    Timeout = beamside_agent:int_opt(startup_files_timeout_ms, Opts, 2000, {10, 60000}),
    Apps = case maps:get(apps, Ctx, []) of
               L when is_list(L) -> [A || {A, _} <- L];
               _ -> []
           end,
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    Run = fun() -> check_all(files(Apps, Deadline), Deadline) end,
    case beamside_agent:run_bounded(Run, Timeout + 1000, []) of
        {ok, Result} -> Result;
        {error, _} = E -> E
    end.

%% The files to check, lazily: [{Kind, Path} | fun() -> More].  Finding the
%% .rel and .app files costs directory listings, so it is done as we go.
files(Apps, Deadline) ->
    Args = fun(Flag) ->
                   case init:get_argument(Flag) of
                       {ok, Lists} -> lists:append(Lists);
                       error -> []
                   end
           end,
    Configs = [{config, with_ext(P, ".config")} || P <- Args(config)],
    Boots = [{boot, boot_file(P ++ ".boot")} || P <- Args(boot)],
    Configs ++ Boots ++ [fun() -> releases() ++ [fun() -> apps(Apps, Deadline) end] end].

with_ext(Path, Ext) ->
    case filename:extension(Path) of
        Ext -> Path;
        _ -> Path ++ Ext
    end.

%% Where init found it: as given, else in the root's bin directory.
boot_file(File) ->
    case prim_file:read_file_info(File) of
        {ok, _} -> File;
        {error, _} ->
            case filename:pathtype(File) of
                relative -> filename:join([code:root_dir(), "bin", File]);
                _ -> File
            end
    end.

releases() ->
    Dir = filename:join(code:root_dir(), "releases"),
    Subs = case prim_file:list_dir(Dir) of
               {ok, Names} -> lists:sort(Names);
               {error, _} -> []
           end,
    Rels = [{rel, filename:join([Dir, Sub, F])}
            || Sub <- lists:sublist(Subs, ?MAX_FILES),
               {ok, Fs} <- [prim_file:list_dir(filename:join(Dir, Sub))],
               F <- lists:sort(Fs), filename:extension(F) =:= ".rel"],
    Releases = filename:join(Dir, "RELEASES"),
    case prim_file:read_file_info(Releases) of
        {ok, _} -> Rels ++ [{releases, Releases}];
        {error, _} -> Rels
    end.

apps(Apps, Deadline) ->
    [{{app, App}, Path} || App <- Apps, not past(Deadline), Path <- [app_file(App)]].

app_file(App) ->
    Name = atom_to_list(App) ++ ".app",
    InLib = case code:lib_dir(App) of
                Dir when is_list(Dir) -> filename:join([Dir, "ebin", Name]);
                _ -> none
            end,
    case InLib =/= none andalso prim_file:read_file_info(InLib) of
        {ok, _} ->
            InLib;
        _ ->
            case code:where_is_file(Name) of
                non_existing -> {missing, Name};
                Path -> Path
            end
    end.

past(Deadline) ->
    erlang:monotonic_time(millisecond) > Deadline.

check_all(Files, Deadline) ->
    check_all(Files, Deadline, 0, []).

check_all([], _, N, Errors) ->
    result(N, false, Errors);
check_all([More | Rest], Deadline, N, Errors) when is_function(More, 0) ->
    case past(Deadline) of
        true -> result(N, true, Errors);
        false -> check_all(More() ++ Rest, Deadline, N, Errors)
    end;
check_all(_, _, N, Errors) when N >= ?MAX_FILES ->
    result(N, true, Errors);
check_all([{Kind, Path} | Rest], Deadline, N, Errors) ->
    case past(Deadline) of
        true ->
            result(N, true, Errors);
        false ->
            case check(Kind, Path) of
                ok -> check_all(Rest, Deadline, N + 1, Errors);
                {error, Reason} -> check_all(Rest, Deadline, N + 1,
                                             [error_entry(Kind, Path, Reason) | Errors])
            end
    end.

result(N, Truncated, Errors) ->
    #{checked => N, truncated => Truncated, errors => lists:reverse(Errors)}.

error_entry(Kind, Path, Reason) ->
    File = case Path of
               {missing, Name} -> Name;
               _ -> Path
           end,
    #{file => beamside_agent:truncate(beamside_agent:to_bin(File), ?MAX_PATH),
      kind => case Kind of
                  {app, _} -> app;
                  K -> K
              end,
      reason => beamside_agent:truncate(reason_text(Reason), ?MAX_REASON)}.

reason_text(R) when is_atom(R) -> atom_to_binary(R, utf8);
reason_text({Line, Mod, Desc}) when is_integer(Line), is_atom(Mod) ->
    %% A file:consult/1 parse error.
    Text = try Mod:format_error(Desc) catch _:_ -> io_lib:format("~0tp", [Desc]) end,
    unicode_bin(io_lib:format("line ~w: ~ts", [Line, Text]));
reason_text(R) ->
    unicode_bin(io_lib:format("~0tP", [R, 12])).

unicode_bin(Chars) ->
    case unicode:characters_to_binary(Chars) of
        B when is_binary(B) -> B;
        _ -> <<"(unprintable)">>
    end.

check(_Kind, {missing, _Name}) ->
    {error, not_found};
check(Kind, Path) ->
    case prim_file:read_file_info(Path) of
        {ok, Info} when element(2, Info) > ?MAX_FILE_BYTES ->
            {error, too_large};
        {ok, Info} when element(3, Info) =/= regular ->
            {error, not_a_file};
        {ok, _} ->
            try parse(Kind, Path)
            catch C:R -> {error, {C, R}}
            end;
        {error, _} = E ->
            E
    end.

parse(config, Path) ->
    case file:consult(Path) of
        {ok, [L]} when is_list(L) -> ok;
        {ok, _} -> {error, not_a_list};
        {error, _} = E -> E
    end;
parse(boot, Path) ->
    {ok, Bin} = prim_file:read_file(Path),
    case catch binary_to_term(Bin) of
        {script, {_, _}, Instrs} when is_list(Instrs) -> ok;
        {'EXIT', _} -> {error, not_a_term};
        _ -> {error, not_a_boot_script}
    end;
parse(rel, Path) ->
    case file:consult(Path) of
        {ok, [{release, {_, _}, {erts, _}, Apps}]} when is_list(Apps) -> ok;
        {ok, _} -> {error, not_a_release};
        {error, _} = E -> E
    end;
parse(releases, Path) ->
    case file:consult(Path) of
        {ok, [L]} when is_list(L) -> ok;
        {ok, _} -> {error, not_a_list};
        {error, _} = E -> E
    end;
parse({app, App}, Path) ->
    case file:consult(Path) of
        {ok, [{application, App, Props}]} when is_list(Props) -> ok;
        {ok, _} -> {error, not_an_application};
        {error, _} = E -> E
    end.

%%% ---------------------------------------------------------------------------
%%% module md5s

-spec modules(map()) -> #{module() => binary()}.
modules(_Opts) ->
    Mods = lists:sublist([M || M <- erlang:loaded(), not beamside(M)], ?MAX_MODULES),
    lists:foldl(fun(M, Acc) ->
                        try erlang:get_module_info(M, md5) of
                            Md5 when is_binary(Md5) -> Acc#{M => beamside_agent:hex(Md5)};
                            _ -> Acc
                        catch error:badarg -> Acc              % unloaded meanwhile
                        end
                end, #{}, Mods).

beamside(M) ->
    lists:prefix("beamside_", atom_to_list(M)).

%%% ---------------------------------------------------------------------------
%%% application environment

-spec env(map()) -> map().
env(Opts) ->
    Text = maps:get(env_text, Opts, true) =/= false,
    Keys = lists:sublist([K || K0 <- maps:get(env_keys, Opts, []), K <- [key(K0)], K =/= bad],
                         ?MAX_ENV_KEYS),
    maps:from_list([{K, value(K, Text)} || K <- Keys]).

key({App, Key}) when is_atom(App), is_atom(Key) -> {App, Key};
key([App, Key]) when is_atom(App), is_atom(Key) -> {App, Key};
key(_) -> bad.

value({App, Key}, Text) ->
    case application:get_env(App, Key) of
        {ok, V} when Text ->
            {_, Shown} = beamside_redact:redact({Key, V}),
            Printed = case beamside_redact:is_marker(Shown) of
                          true -> list_to_binary(Shown);
                          false -> beamside_alarm_handler:print(Shown)
                      end,
            #{hash => erlang:phash2(V), text => Printed};
        {ok, V} -> #{hash => erlang:phash2(V)};
        undefined -> undefined
    end.
