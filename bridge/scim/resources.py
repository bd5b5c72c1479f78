"""What the SCIM endpoint serves (scim2-models) and how its resources map to the platform's accounts.

Resources: ``User`` with the enterprise extension, and ``Group``; the schemas, resource types and
validation are scim2-models' own. The policy accepts what Entra ID and Okta send beyond the strict
RFC reading: a PATCH ``remove`` carrying a ``value``, an ``add`` whose path filter matches no entry
yet (``emails[type eq "work"].value``), attributes of schemas we do not declare (dropped).

Mapping (:func:`user_write`): the account's **email** (what a device prompt takes, the account's
key) is the primary ``emails`` value (the first one when none is marked primary) when it is in one
of the tenant's domains, else ``userName`` when that is such an address; neither: ``400
invalidValue``. ``userName`` is the account's user name (Entra ID: the UPN; Okta: the login),
``displayName`` (else ``name.formatted``, else given and family name) its display name, ``active``
whether it is enabled (absent: enabled), ``preferredLanguage`` its language, the ``fax`` phone
number its fax number, ``externalId`` is kept. Every attribute is kept as written and returned as
such; ``password`` is never stored (SSO accounts sign in with the IdP's password).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    ComplexAttribute,
    Email,
    EnterpriseUser,
    ETag,
    Filter,
    Group,
    InvalidValueException,
    Meta,
    Patch,
    Resource,
    ResourceType,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
)
from scim2_models import User as CoreUser
from scim2_models.resources.resource import AnyExtension

from bridge.config import TenantConfig
from bridge.errors import RequestError
from bridge.state.records import normalize_email
from bridge.state.scim import GroupWrite, ProvisionedGroup, ProvisionedUser, UserWrite


class PlatformEmail(Email):
    """An ``emails`` entry whose value is any text: the tenant's domains decide which addresses a user may have
    (:func:`account_email`), not email_validator's idea of deliverable (it refuses ``.test``, ``.local``...)."""

    value: str | None = None


class User(CoreUser[AnyExtension]):
    """SCIM's core User (same schema), with :class:`PlatformEmail` entries."""

    emails: list[PlatformEmail] | None = None  # type: ignore[assignment]
    Emails: ClassVar[type[ComplexAttribute]] = PlatformEmail


UserResource = User[EnterpriseUser]
MAX_RESULTS = 200  # a page holds at most this many resources (ServiceProviderConfig.filter.maxResults)

POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)

SERVICE_PROVIDER_CONFIG = ServiceProviderConfig(
    patch=Patch(supported=True),
    bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
    filter=Filter(supported=True, max_results=MAX_RESULTS),
    change_password=ChangePassword(supported=False),
    sort=Sort(supported=False),
    etag=ETag(supported=False),
    authentication_schemes=[AuthenticationScheme(
        type=AuthenticationScheme.Type.oauthbearertoken, name="Bearer token",
        description="A SCIM token of the tenant (loginbridge scim token create --tenant ID), as "
                    "'Authorization: Bearer TOKEN'", primary=True)],
)

USER_TYPE = ResourceType.from_resource(UserResource)
GROUP_TYPE = ResourceType.from_resource(Group)
PROVIDER = ScimProvider(models=[User, EnterpriseUser, Group], resource_types=[USER_TYPE, GROUP_TYPE],
                        config=SERVICE_PROVIDER_CONFIG, policy=POLICY)

_NOT_STORED = ("id", "meta", "password")


def _attributes(resource: Resource[Any]) -> dict[str, Any]:
    """The resource's attributes as JSON (camelCase, extensions under their URN), without id, meta, password."""
    data: dict[str, Any] = resource.model_dump(mode="json")
    for name in _NOT_STORED:
        data.pop(name, None)
    return data


def etag(version: int, enabled: bool = True) -> str:
    """A resource's ``meta.version``: the SCIM write count, and whether the account is enabled
    (an administrator may disable it outside SCIM, which changes ``active``)."""
    return f'W/"{version}.{int(enabled)}"'


def version_number(tag: str | None) -> int | None:
    """The write count in a ``meta.version`` made by :func:`etag` (None: no tag, or not one of ours)."""
    if not tag:
        return None
    digits = tag.removeprefix("W/").strip('"').split(".", 1)[0]
    return int(digits) if digits.isdigit() else None


def account_email(resource: User[Any], tenant: TenantConfig) -> str:
    """The address a device signs this user in with (see the module docstring); 400 invalidValue when none."""
    candidates: list[str] = []
    emails = [e for e in resource.emails or [] if e.value]
    primary = next((e for e in emails if e.primary), emails[0] if emails else None)
    if primary is not None and primary.value:
        candidates.append(str(primary.value))
    if resource.user_name and "@" in resource.user_name:
        candidates.append(resource.user_name)
    for candidate in candidates:
        try:
            email_lc = normalize_email(candidate)
        except RequestError:
            continue
        if email_lc.rsplit("@", 1)[1] in tenant.domains:
            return candidate.strip()
    raise InvalidValueException(
        detail=f"a user needs an email address in one of tenant {tenant.id}'s domains ({', '.join(tenant.domains)}):"
               " the primary emails value, or userName when it is an email address (devices sign users in with it)")


def _display_name(resource: User[Any]) -> str:
    if resource.display_name and resource.display_name.strip():
        return resource.display_name.strip()
    name = resource.name
    if name is None:
        return ""
    if name.formatted and name.formatted.strip():
        return name.formatted.strip()
    return " ".join(part.strip() for part in (name.given_name, name.family_name) if part and part.strip())


def _fax_number(resource: User[Any]) -> str | None:
    for phone in resource.phone_numbers or []:
        if phone.value and str(phone.type or "").lower() == "fax":
            return str(phone.value)
    return None


def user_write(resource: User[Any], tenant: TenantConfig) -> UserWrite:
    """What a created or replaced User resource writes to the account (400 invalidValue when it cannot be one)."""
    username = (resource.user_name or "").strip()
    if not username:
        raise InvalidValueException(detail="userName is required")
    return UserWrite(
        email=account_email(resource, tenant), username=username, display_name=_display_name(resource),
        enabled=resource.active is not False, language=(resource.preferred_language or "").strip() or None,
        fax_number=_fax_number(resource), external_id=resource.external_id, resource=_attributes(resource))


def user_resource(user: ProvisionedUser) -> User[Any]:
    """The SCIM User of an account: its attributes as last written over SCIM (or made from the account when it
    was created another way), with the account's state of now (``active``, ``userName``)."""
    if user.resource is not None:
        data = dict(user.resource)
    else:
        data = {"schemas": [str(User.__schema__)], "emails": [{"value": user.email, "type": "work", "primary": True}]}
        if user.display_name:
            data["displayName"] = user.display_name
        if user.language:
            data["preferredLanguage"] = user.language
        if user.fax_number:
            data["phoneNumbers"] = [{"value": user.fax_number, "type": "fax"}]
    data["id"] = user.scim_id
    data["userName"] = user.username
    if user.external_id is not None:
        data["externalId"] = user.external_id
    else:
        data.pop("externalId", None)
    if "active" in data or not user.enabled:
        data["active"] = user.enabled
    resource = UserResource.model_validate(data)
    resource.meta = _meta("User", user.created_at, user.updated_at, etag(user.version, user.enabled))
    return resource


def group_write(resource: Group) -> GroupWrite:
    name = (resource.display_name or "").strip()
    if not name:
        raise InvalidValueException(detail="displayName is required")
    return GroupWrite(display_name=name, external_id=resource.external_id, resource=_attributes(resource))


def group_resource(group: ProvisionedGroup) -> Group:
    data = dict(group.resource)
    data["id"] = group.scim_id
    data["displayName"] = group.display_name
    if group.external_id is not None:
        data["externalId"] = group.external_id
    resource = Group.model_validate(data)
    resource.meta = _meta("Group", group.created_at, group.updated_at, etag(group.version))
    return resource


def _meta(resource_type: str, created: datetime, modified: datetime, version: str) -> Meta:
    return Meta(resource_type=resource_type, created=created, last_modified=modified, version=version)
