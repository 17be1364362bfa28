"""The sandbox app's routes: one blueprint per Zoom resource, registered by ``app.py``.

    oauth.py        POST /oauth/token
    meetings.py     /v2/users/{userId}/meetings, /v2/meetings/{meetingId}[/status]
    registrants.py  /v2/meetings/{meetingId}/registrants[/status, /{registrantId}]
    recordings.py   /v2/meetings/{id or uuid}/recordings[...], /v2/users/{userId}/recordings,
                    and the file links: /rec/download, /rec/files, /rec/play, /rec/share
    links.py        the pages a join, start or registration link opens:
                    /j, /w, /s, /meeting/register
    admin.py        /_sandbox/... (not Zoom)

Each module's ``blueprint(sandbox)`` binds its views to one :class:`~..core.Sandbox`; the hooks
that apply to every request (faults, the bearer token, the sandbox header, Zoom's error bodies)
stay on the app. ``common.py`` holds the request helpers the views share.
"""
