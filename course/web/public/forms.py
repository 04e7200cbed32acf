"""What the page modules share: the request parameters every handler takes, the answer to a failed
CSRF check, and the time zone names the forms offer."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated
from zoneinfo import available_timezones

from fastapi import Depends, Form
from markupsafe import Markup

from course.i18n import N_
from course.web.site import PageError, Site, get_site

SiteDep = Annotated[Site, Depends(get_site)]
TextField = Annotated[str, Form()]


def csrf_failed() -> PageError:
    return PageError(
        403,
        N_("Please try that again"),
        N_("This form had been open too long or your browser blocked our cookie. Reload the page and send it again."),
    )


@lru_cache
def zone_options() -> Markup:
    """The time zone field's datalist options, escaped once: 400-odd names escaped on every page
    were a tenth of the preferences page's time."""
    return Markup("\n").join(Markup('<option value="{}">').format(name) for name in zone_names_for_list())


@lru_cache
def zone_names_for_list() -> list[str]:
    """The choices offered for the time zone field: the region/city names people recognise."""
    return sorted(name for name in available_timezones() if "/" in name and not name.startswith(("Etc/", "SystemV/")))
