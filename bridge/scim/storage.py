"""scim2-server's storage for one tenant and one request: the store's accounts (bridge/state/scim.py) as resources.

scim2-server validates the requests, applies PUT and PATCH to the resource read here and builds the
answers; this class reads and writes, maps the resources (bridge/scim/resources.py), and writes an
audit event naming the token for every change.

Searches: an ``eq`` on ``userName``, ``externalId`` or ``id`` (alone or in an ``and``) narrows the
candidates in SQL; the filter itself is always evaluated by scim2-models on the candidates, so every
filter the grammar allows works (the others walk the tenant's accounts). Without a filter a page is
read with LIMIT/OFFSET.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from scim2_models import (
    ConflictException,
    Group,
    NotFoundException,
    NotImplementedException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimFilter,
    SearchRequest,
    UniquenessException,
)
from scim2_models.path import CompareOperator, Comparison, FilterNode, LogicalExpr, LogicalOperator
from scim2_server.storage import AsyncScimStorage, SearchPage

from bridge.config import TenantConfig
from bridge.scim.resources import (
    User,
    UserResource,
    group_resource,
    group_write,
    user_resource,
    user_write,
    version_number,
)
from bridge.state.scim import (
    NotProvisioned,
    Provisioning,
    ProvisioningConflict,
    StaleVersion,
    UserChange,
)

AuditHook = Callable[[str, str | None], Awaitable[None]]  # (result, the account's email or None)
_NARROWING = {"username": "username", "externalid": "external_id", "id": "scim_id"}


def _narrowing(node: FilterNode) -> dict[str, str]:
    """The ``eq`` comparisons on userName, externalId and id that every match must meet (``and`` terms)."""
    terms: tuple[FilterNode, ...] = (node,)
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
        terms = node.terms
    found: dict[str, str] = {}
    for term in terms:
        if (isinstance(term, Comparison) and term.op == CompareOperator.eq and isinstance(term.value, str)
                and term.attr_path.sub_attr is None):
            key = _NARROWING.get(term.attr_path.attr.lower())
            if key is not None and key not in found:
                found[key] = term.value
    return found


def _page(search_request: SearchRequest[Any], resources: list[Resource[Any]]) -> SearchPage:
    start = search_request.start_index_0 or 0
    stop = None if search_request.count is None else start + search_request.count
    return SearchPage(total=len(resources), resources=resources[start:stop])


class TenantStorage(AsyncScimStorage):
    """The users and groups of one tenant, for one request (it remembers the versions it read)."""

    def __init__(self, provisioning: Provisioning, tenant: TenantConfig, audit: AuditHook) -> None:
        self._prov = provisioning
        self._tenant = tenant
        self._audit = audit
        self._read: dict[str, int] = {}  # id -> version of what get() returned (the base of a PUT or PATCH)

    @staticmethod
    def _is_user(resource_type: ResourceType) -> bool:
        return resource_type.name == "User"

    def _expected(self, resource_id: str, expected_version: str | None) -> int | None:
        return version_number(expected_version) if expected_version else self._read.get(resource_id)

    # -- reading ------------------------------------------------------------------------------------------

    async def get(self, resource_type: ResourceType, resource_id: str, *,
                  response_parameters: ResponseParameters[Any] | None = None) -> Resource[Any]:
        try:
            if self._is_user(resource_type):
                user = await self._prov.get_user(self._tenant.id, resource_id)
                self._read[resource_id] = user.version
                return user_resource(user)
            group = await self._prov.get_group(self._tenant.id, resource_id)
            self._read[resource_id] = group.version
            return group_resource(group)
        except NotProvisioned:
            raise NotFoundException(detail=f"{resource_type.name} {resource_id} not found") from None

    async def search(self, resource_types: list[ResourceType], search_request: SearchRequest[Any], *,
                     position: Any = None) -> SearchPage:
        if len(resource_types) != 1:
            raise NotImplementedException(detail="search the /Users or /Groups endpoint")
        scim_filter = search_request.filter
        if not self._is_user(resource_types[0]):
            groups: list[Resource[Any]] = [group_resource(g) for g in await self._prov.list_groups(self._tenant.id)]
            if scim_filter is not None:
                bound = ScimFilter[Group](str(scim_filter))
                groups = [g for g in groups if bound.match(cast(Group, g))]
            return _page(search_request, groups)
        if scim_filter is None:
            total, users = await self._prov.list_users(self._tenant.id, offset=search_request.start_index_0 or 0,
                                                       limit=search_request.count)
            return SearchPage(total=total, resources=[user_resource(u) for u in users])
        bound_user = ScimFilter[UserResource](str(scim_filter))
        narrowing = _narrowing(bound_user.ast)
        if narrowing:
            candidates = await self._prov.find_users(self._tenant.id, **narrowing)
        else:
            candidates = (await self._prov.list_users(self._tenant.id))[1]
        matches: list[Resource[Any]] = []
        for user in candidates:
            resource = user_resource(user)
            if bound_user.match(resource):
                matches.append(resource)
        return _page(search_request, matches)

    # -- writing ------------------------------------------------------------------------------------------

    async def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        if not self._is_user(resource_type):
            group = await self._prov.create_group(self._tenant.id, group_write(cast(Group, resource)))
            await self._audit("group_created", None)
            return group_resource(group)
        write = user_write(cast(User[Any], resource), self._tenant)
        try:
            change = await self._prov.create_user(self._tenant.id, write)
        except ProvisioningConflict as exc:
            raise UniquenessException(detail=str(exc)) from None
        await self._audit("user_created" if change.user.enabled else "user_created_inactive", change.user.email)
        return user_resource(change.user)

    async def update(self, resource_type: ResourceType, resource: Resource[Any], *,
                     expected_version: str | None = None) -> Resource[Any]:
        resource_id = str(resource.id)
        expected = self._expected(resource_id, expected_version)
        try:
            if not self._is_user(resource_type):
                group = await self._prov.update_group(self._tenant.id, resource_id, group_write(cast(Group, resource)),
                                                      expected_version=expected)
                await self._audit("group_updated", None)
                return group_resource(group)
            write = user_write(cast(User[Any], resource), self._tenant)
            change = await self._prov.update_user(self._tenant.id, resource_id, write, expected_version=expected)
        except NotProvisioned:
            raise NotFoundException(detail=f"{resource_type.name} {resource_id} not found") from None
        except ProvisioningConflict as exc:
            raise UniquenessException(detail=str(exc)) from None
        except StaleVersion as exc:
            if expected_version:
                raise PreconditionFailedException(detail=str(exc)) from None
            raise ConflictException(detail=f"{exc}: send the request again") from None
        await self._audit(_update_result(change), change.user.email)
        return user_resource(change.user)

    async def delete(self, resource_type: ResourceType, resource_id: str, *,
                     expected_version: str | None = None) -> None:
        expected = version_number(expected_version) if expected_version else None
        try:
            if not self._is_user(resource_type):
                await self._prov.delete_group(self._tenant.id, resource_id, expected_version=expected)
                await self._audit("group_deleted", None)
                return
            change = await self._prov.deprovision_user(self._tenant.id, resource_id, expected_version=expected)
        except NotProvisioned:
            raise NotFoundException(detail=f"{resource_type.name} {resource_id} not found") from None
        except StaleVersion as exc:
            raise PreconditionFailedException(detail=str(exc)) from None
        await self._audit("user_deprovisioned", change.user.email)


def _update_result(change: UserChange) -> str:
    if change.deactivated:
        return "user_deactivated"
    if change.reactivated:
        return "user_reactivated"
    if change.previous_email is not None:
        return "user_email_changed"
    return "user_updated"
