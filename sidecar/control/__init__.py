"""The gRPC control plane (``beamside.v1``): operator tools over the managed nodes.

Package layout:

* ``protos/beamside/v1/*.proto`` -- the API; ``gen/`` -- code generated from it
  by ``scripts/gen_protos.sh`` (never edited by hand);
* ``server.py`` -- :func:`create_server` / :func:`serve`, the dispatcher
  (status mapping, audit), health and reflection;
* ``auth.py`` -- bearer tokens and roles (an interceptor);
  ``config.py`` -- :class:`GrpcConfig`, the token file;
* ``validate.py`` -- checks of pids, atoms, tables, limits, expressions;
* ``base.py`` -- :class:`Deps` and the calls to a node (status mapping);
* ``services/`` -- one servicer per service; the node-side work is done by
  the service's own agent module (``erl_agents/beamside_ops_*.erl``, the rules
  they share in ``beamside_ops.erl``).

Only the settings are imported here (``sidecar.config`` needs them); the
server is in :mod:`sidecar.control.server` (``create_server``, ``serve``,
``Deps``).
"""

from .config import (
    GrpcConfig,
    Identity,
    Role,
    TokenFileError,
    load_identities,
    load_tokens,
)

__all__ = [
    "GrpcConfig",
    "Identity",
    "Role",
    "TokenFileError",
    "load_identities",
    "load_tokens",
]
