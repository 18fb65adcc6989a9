"""/v1/uploads: presigned PUT URLs for files too large to send through the API."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import CallerDep, SettingsDep, StorageDep
from api.schemas import UploadCreate, UploadOut
from shared.storage.keys import upload_key

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=UploadOut)
def create_upload(
    body: UploadCreate, settings: SettingsDep, storage: StorageDep, caller: CallerDep
) -> UploadOut:
    key = upload_key(body.filename, caller.tenant_id, keep_folders=True)
    bucket = settings.input_bucket
    url = storage.presign_put(bucket, key, settings.presign_expiry_s, body.content_type)
    headers = {"Content-Type": body.content_type} if body.content_type else {}
    return UploadOut(
        bucket=bucket, key=key, url=url, expires_in_s=settings.presign_expiry_s, headers=headers
    )
