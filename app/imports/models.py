"""Import jobs, their per-row reports (CL-IO-2) and saved column mappings (CL-IO-1); the database,
not Redis, holds the progress."""

import datetime as dt

from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint

from ..core.types import JSONType
from ..extensions import db


def utcnow():
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


IMPORT_STATUSES = ("uploaded", "queued", "running", "done", "failed", "cancelled")


class ImportJob(db.Model):
    """One uploaded client file and its import run: mapping, options, checkpoint and counts."""

    __tablename__ = "import_job"
    id = Column(Integer, primary_key=True)
    user_id = Column(Integer, ForeignKey("ab_user.id"), nullable=False, index=True)
    created_at = Column(DateTime, nullable=False, default=utcnow)
    original_name = Column(String(255), nullable=False, default="")
    stored_name = Column(String(64), nullable=False)      # uuid4 name under IMPORT_FOLDER, never user-chosen
    file_sha256 = Column(String(64), nullable=False, index=True)
    file_size = Column(Integer, nullable=False, default=0)
    file_format = Column(String(8), nullable=False, default="csv")   # csv / xlsx
    encoding = Column(String(20))
    delimiter = Column(String(4))
    headers = Column(JSONType, nullable=False, default=list)
    mapping = Column(JSONType, nullable=False, default=dict)    # column index (str) -> field key
    options = Column(JSONType, nullable=False, default=dict)
    dry_run = Column(Boolean, nullable=False, default=False)
    status = Column(String(12), nullable=False, default="uploaded")
    reason = Column(Text)                                        # sanitised failure reason for the user
    total_rows = Column(Integer)
    committed_through = Column(Integer, nullable=False, default=0)   # data rows fully processed and committed
    created_count = Column(Integer, nullable=False, default=0)
    updated_count = Column(Integer, nullable=False, default=0)
    unchanged_count = Column(Integer, nullable=False, default=0)
    failed_count = Column(Integer, nullable=False, default=0)
    notice_count = Column(Integer, nullable=False, default=0)
    started_at = Column(DateTime)
    finished_at = Column(DateTime)
    heartbeat_at = Column(DateTime)
    cancel_requested = Column(Boolean, nullable=False, default=False)

    @property
    def job_key(self):
        """The id used for RQ and for audit attribution."""
        return f"import-{self.id}"

    @property
    def done_rows(self):
        return self.committed_through or 0

    @property
    def finished(self):
        return self.status in ("done", "failed", "cancelled")

    def __repr__(self):
        return f"<ImportJob {self.id} {self.status}>"


class ImportRowError(db.Model):
    """One reported row of an import: an error (row skipped) or a notice (row imported, with a remark)."""

    __tablename__ = "import_row_error"
    id = Column(Integer, primary_key=True)
    job_id = Column(Integer, ForeignKey("import_job.id", ondelete="CASCADE"), nullable=False, index=True)
    line = Column(Integer, nullable=False)
    kind = Column(String(8), nullable=False, default="error")  # error / notice
    reason = Column(Text, nullable=False)
    raw = Column(JSONType, nullable=False, default=list)       # the original cells of the row


MAPPING_NAME_MAX = 100


class ImportMapping(db.Model):
    """A column mapping saved under a name by one staff user, keyed by header text so it fits any column order."""

    __tablename__ = "import_mapping"
    id = Column(Integer, primary_key=True)
    # No separate user_id index: the unique (user_id, name) constraint's index leads with it.
    user_id = Column(Integer, ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False)
    name = Column(String(MAPPING_NAME_MAX), nullable=False)
    columns = Column(JSONType, nullable=False, default=dict)     # normalised header text -> field key
    created_at = Column(DateTime, nullable=False, default=utcnow)
    updated_at = Column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_import_mapping_user_name"),)

    def __repr__(self):
        return f"<ImportMapping {self.id} {self.name!r}>"


EXPORT_STATUSES = ("queued", "running", "done", "failed")


class ExportJob(db.Model):
    """A large client export run as a background job (CL-IO-3); the file waits in EXPORT_FOLDER."""

    __tablename__ = "export_job"
    id = Column(Integer, primary_key=True)
    user_id = Column(Integer, ForeignKey("ab_user.id", ondelete="CASCADE"), nullable=False, index=True)
    status = Column(String(12), nullable=False, default="queued")
    fmt = Column(String(8), nullable=False, default="csv")        # csv / xlsx
    request = Column(JSONType, nullable=False, default=dict)      # q, ids, columns, bom, args {key: [values]}
    row_count = Column(Integer)
    file_name = Column(String(64))          # uuid4 name inside EXPORT_FOLDER, never user-controlled
    download_name = Column(String(64), nullable=False)
    reason = Column(Text)                   # sanitised failure reason for the user
    created_at = Column(DateTime, nullable=False, default=utcnow)
    finished_at = Column(DateTime)

    @property
    def job_key(self):
        return f"export-{self.id}"

    @property
    def finished(self):
        return self.status in ("done", "failed", "expired")  # expired: the file was deleted (EXPORT_KEEP_HOURS)

    def __repr__(self):
        return f"<ExportJob {self.id} {self.status}>"
