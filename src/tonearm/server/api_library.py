"""REST routes of the library: tracks, albums, artists, genres, favourites, playlists, plays,
stats, similar tracks and scans.

Routes that touch the database are plain ``def``: FastAPI runs them on its thread pool, so a
query never blocks the event loop. Reads go through the library's query cache.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool

from tonearm.errors import ParameterError
from tonearm.library.repositories import FAVOURITE_PAGE_TAGS, PAGE_TAGS
from tonearm.server.schemas import (
    MAX_ID,
    Album,
    Artist,
    Favourite,
    Genre,
    Page,
    PlayCount,
    Playlist,
    PlaylistChange,
    PlaylistCreate,
    ScanState,
    Similar,
    Stats,
    Track,
    error_responses,
)
from tonearm.server.state import ServerState, server_state

if TYPE_CHECKING:
    from tonearm.library.records import TrackRecord

__all__ = ["router"]

router = APIRouter(prefix="/api")
State = Annotated[ServerState, Depends(server_state)]
TrackOrderName = Literal["title", "path", "added", "duration", "loudness"]
MAX_PAGE = 500
TrackId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
AlbumId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
PlaylistId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


def track_or_404(state: ServerState, track_id: int) -> TrackRecord:
    record = state.library.tracks.get(track_id)
    if record is None:
        raise HTTPException(404, f"no track {track_id}")
    return record


def _bad_request(exc: ParameterError) -> HTTPException:
    return HTTPException(400, str(exc))


@router.get("/tracks", response_model=Page[Track], tags=["library"], responses=error_responses(400))
async def list_tracks(
    state: State,
    q: Annotated[str | None, Query(max_length=200, description="Search text")] = None,
    order: TrackOrderName = "title",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    include_missing: bool = False,
    album_id: Annotated[int | None, Query(description="Only the tracks of this album")] = None,
    artist_id: Annotated[
        int | None,
        Query(description="Only the tracks of this artist (the track's own)"),
    ] = None,
    genre_id: Annotated[int | None, Query(description="Only the tracks of this genre")] = None,
    favourites: Annotated[bool, Query(description="Only the favourite tracks")] = False,
) -> Response:
    """Tracks in ``order``, optionally only those matching ``q`` (title, artist, album, genre)
    and the filters (all of them; an unknown id gives an empty page); page by ``offset`` or by
    the previous page's ``next_cursor`` (which continues only the listing it came from).

    A page's JSON is cached with the library's pages (dropped by any write to what it shows):
    a hit is answered on the event loop, a miss is loaded on a worker thread.
    """
    wanted = TrackPageQuery(
        text=q.strip() if q is not None and q.strip() else None,
        order=order,
        offset=offset,
        limit=limit,
        cursor=cursor,
        include_missing=include_missing,
        album_id=album_id,
        artist_id=artist_id,
        genre_id=genre_id,
        favourites_only=favourites,
    )
    body = state.library.cache.peek(("api:tracks", wanted), _MISSING)
    if body is _MISSING:
        body = await run_in_threadpool(_track_page_json, state, wanted)
    return Response(content=body, media_type="application/json")


_MISSING = object()


@dataclass(frozen=True, slots=True)
class TrackPageQuery:
    """One page of ``GET /api/tracks`` (hashable: it keys the page's cached JSON)."""

    text: str | None
    order: str
    offset: int
    limit: int
    cursor: str | None
    include_missing: bool
    album_id: int | None
    artist_id: int | None
    genre_id: int | None
    favourites_only: bool


def _track_page_json(state: ServerState, wanted: TrackPageQuery) -> bytes:
    """A page of tracks as JSON bytes, through the library's query cache."""
    tracks = state.library.tracks

    def load() -> bytes:
        try:
            if wanted.text is not None:
                page = tracks.search(
                    wanted.text,
                    offset=wanted.offset,
                    limit=wanted.limit,
                    order=wanted.order,
                    after=wanted.cursor,
                    album_id=wanted.album_id,
                    artist_id=wanted.artist_id,
                    genre_id=wanted.genre_id,
                    favourites_only=wanted.favourites_only,
                )
            else:
                page = tracks.list(
                    offset=wanted.offset,
                    limit=wanted.limit,
                    order=wanted.order,
                    after=wanted.cursor,
                    include_missing=wanted.include_missing,
                    album_id=wanted.album_id,
                    artist_id=wanted.artist_id,
                    genre_id=wanted.genre_id,
                    favourites_only=wanted.favourites_only,
                )
        except ParameterError as exc:
            raise _bad_request(exc) from None
        items = [Track.trusted(record) for record in page.items]
        return Page[Track].of(page, items).model_dump_json().encode()

    tags = FAVOURITE_PAGE_TAGS if wanted.favourites_only else PAGE_TAGS
    return state.library.cache.get_or_load(("api:tracks", wanted), tags, load)


@router.get(
    "/tracks/{track_id}", response_model=Track, tags=["library"], responses=error_responses(404)
)
def get_track(state: State, track_id: TrackId) -> Track:
    return Track.of(track_or_404(state, track_id))


@router.post(
    "/tracks/{track_id}/plays",
    response_model=PlayCount,
    tags=["library"],
    responses=error_responses(404),
)
def record_play(state: State, track_id: TrackId) -> PlayCount:
    """Count one play (atomic: concurrent plays are all counted)."""
    track_or_404(state, track_id)
    count = state.library.tracks.record_play(track_id)
    state.hub.publish_threadsafe("library", "library.changed", {"track_id": track_id})
    return PlayCount(track_id=track_id, play_count=count)


@router.put(
    "/tracks/{track_id}/favourite",
    response_model=Track,
    tags=["library"],
    responses=error_responses(400, 404),
)
def set_favourite(state: State, track_id: TrackId, body: Favourite) -> Track:
    track_or_404(state, track_id)
    state.library.tracks.set_favourite(track_id, body.favourite)
    state.hub.publish_threadsafe("library", "library.changed", {"track_id": track_id})
    return Track.of(track_or_404(state, track_id))


@router.get("/favourites", response_model=list[Track], tags=["library"])
def list_favourites(state: State) -> list[Track]:
    tracks = (state.library.tracks.get(i) for i in state.library.tracks.favourites())
    return [Track.of(record) for record in tracks if record is not None]


@router.get(
    "/tracks/{track_id}/similar",
    response_model=list[Similar],
    tags=["library"],
    responses=error_responses(404, 409),
)
def similar_tracks(
    state: State, track_id: TrackId, k: Annotated[int, Query(ge=1, le=100)] = 10
) -> list[Similar]:
    """The ``k`` nearest tracks by fingerprint (analysed tracks only)."""
    track_or_404(state, track_id)
    try:
        neighbours = state.library.similar(track_id, k)
    except ParameterError as exc:
        raise HTTPException(409, str(exc)) from None
    found = []
    for neighbour in neighbours:
        record = state.library.tracks.get(neighbour.track_id)
        if record is not None:
            found.append(Similar(track=Track.of(record), distance=neighbour.distance))
    return found


@router.get("/albums", response_model=Page[Album], tags=["library"], responses=error_responses(400))
def list_albums(
    state: State,
    q: Annotated[str | None, Query(max_length=200)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Page[Album]:
    try:
        page = state.library.albums.list(offset=offset, limit=limit, query=q, after=cursor)
    except ParameterError as exc:
        raise _bad_request(exc) from None
    return Page[Album].of(page, [Album.of(record) for record in page.items])


@router.get(
    "/albums/{album_id}", response_model=Album, tags=["library"], responses=error_responses(404)
)
def get_album(state: State, album_id: AlbumId) -> Album:
    record = state.library.albums.get(album_id)
    if record is None:
        raise HTTPException(404, f"no album {album_id}")
    return Album.of(record)


@router.get(
    "/albums/{album_id}/cover",
    tags=["library"],
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}, **error_responses(404)},
)
def album_cover(state: State, album_id: AlbumId) -> Response:
    cover = state.library.albums.cover(album_id)
    if cover is None:
        raise HTTPException(404, f"no cover for album {album_id}")
    data, mime = cover
    return Response(data, media_type=mime, headers={"Cache-Control": "max-age=3600"})


@router.get(
    "/artists", response_model=Page[Artist], tags=["library"], responses=error_responses(400)
)
def list_artists(
    state: State,
    q: Annotated[str | None, Query(max_length=200)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> Page[Artist]:
    try:
        page = state.library.artists.list(offset=offset, limit=limit, query=q)
    except ParameterError as exc:
        raise _bad_request(exc) from None
    return Page[Artist].of(page, [Artist(id=a.id, name=a.name) for a in page.items])


@router.get("/genres", response_model=list[Genre], tags=["library"])
def list_genres(state: State) -> list[Genre]:
    return [Genre(id=g.id, name=g.name) for g in state.library.genres.list()]


@router.get("/playlists", response_model=list[Playlist], tags=["playlists"])
def list_playlists(state: State) -> list[Playlist]:
    return [Playlist.of(record) for record in state.library.playlists.list()]


@router.post(
    "/playlists",
    response_model=Playlist,
    status_code=201,
    tags=["playlists"],
    responses=error_responses(400),
)
def create_playlist(state: State, body: PlaylistCreate) -> Playlist:
    try:
        record = state.library.playlists.create(body.name, body.track_ids)
    except ParameterError as exc:
        raise _bad_request(exc) from None
    state.hub.publish_threadsafe("library", "library.changed", {"playlist_id": record.id})
    return Playlist.of(record)


def _playlist_or_404(state: ServerState, playlist_id: int) -> None:
    if state.library.playlists.get(playlist_id) is None:
        raise HTTPException(404, f"no playlist {playlist_id}")


@router.get(
    "/playlists/{playlist_id}",
    response_model=Playlist,
    tags=["playlists"],
    responses=error_responses(404),
)
def get_playlist(state: State, playlist_id: PlaylistId) -> Playlist:
    record = state.library.playlists.get(playlist_id)
    if record is None:
        raise HTTPException(404, f"no playlist {playlist_id}")
    return Playlist.of(record)


@router.patch(
    "/playlists/{playlist_id}",
    response_model=Playlist,
    tags=["playlists"],
    responses=error_responses(400, 404),
)
def change_playlist(state: State, playlist_id: PlaylistId, body: PlaylistChange) -> Playlist:
    """Rename it, replace its entries (``track_ids``, in order) and/or ``append`` to them."""
    _playlist_or_404(state, playlist_id)
    playlists = state.library.playlists
    try:
        record = playlists.get(playlist_id)
        if body.name is not None:
            record = playlists.rename(playlist_id, body.name)
        if body.track_ids is not None:
            record = playlists.set_tracks(playlist_id, body.track_ids)
        if body.append is not None:
            record = playlists.append(playlist_id, body.append)
    except ParameterError as exc:
        raise _bad_request(exc) from None
    if record is None:
        raise HTTPException(404, f"no playlist {playlist_id}")
    state.hub.publish_threadsafe("library", "library.changed", {"playlist_id": playlist_id})
    return Playlist.of(record)


@router.delete(
    "/playlists/{playlist_id}", status_code=204, tags=["playlists"], responses=error_responses(404)
)
def delete_playlist(state: State, playlist_id: PlaylistId) -> Response:
    _playlist_or_404(state, playlist_id)
    try:
        state.library.playlists.delete(playlist_id)
    except ParameterError as exc:
        raise HTTPException(404, str(exc)) from None
    state.hub.publish_threadsafe("library", "library.changed", {"playlist_id": playlist_id})
    return Response(status_code=204)


@router.get("/stats", response_model=Stats, tags=["library"])
def library_stats(state: State) -> Stats:
    return Stats(**dataclasses.asdict(state.library.stats()))


@router.post(
    "/scan",
    response_model=ScanState,
    status_code=202,
    tags=["scan"],
    responses=error_responses(429),
)
def start_scan(state: State, request: Request) -> ScanState:
    """Scan the library folders again (one scan at a time; rate-limited)."""
    state.limiter.check(_client(request), "scan")
    return ScanState(**dataclasses.asdict(state.scans.start()))


@router.get("/scan", response_model=ScanState, tags=["scan"])
def scan_status(state: State) -> ScanState:
    return ScanState(**dataclasses.asdict(state.scans.status))


@router.delete("/scan", response_model=ScanState, tags=["scan"])
def cancel_scan(state: State) -> ScanState:
    return ScanState(**dataclasses.asdict(state.scans.cancel()))


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"
