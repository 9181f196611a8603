"""Views of the kyc blueprint: /kyc (data, documents, level and limits) and the documents themselves."""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required

from .. import db, uploads
from ..errors import DomainError
from ..forms import form_error
from ..formatting import N_
from . import bp
from ..cpf import formatted
from .forms import KycDataForm, KycDocumentsForm

# Two files of up to 5 MB each, plus the form: above the app-wide limit.
UPLOAD_REQUEST_LIMIT = 2 * uploads.MAX_BYTES + 512 * 1024


@bp.record_once
def _raise_upload_limit(state):
    # CSRF validation reads the body in an app-level before_request, so the
    # per-request limit must be set before it runs.
    def raise_limit():
        if request.endpoint == "kyc.upload_documents":
            request.max_content_length = UPLOAD_REQUEST_LIMIT
    state.app.before_request_funcs.setdefault(None, []).insert(0, raise_limit)


@bp.app_errorhandler(413)
def too_large(exc):
    return render_template("error.html", title=N_("Arquivo grande demais"),
                           message=N_("Os arquivos enviados passam do limite: no máximo 5 MB cada.")), 413


def _page(data_form=None, documents_form=None, status=200):
    kyc = db.call_one("api.get_kyc", user_id=current_user.id)
    levels = db.call("api.list_kyc_limits")
    if data_form is None:
        data_form = KycDataForm(formdata=None, data={
            "full_name": kyc["full_name"] or current_user.display_name, "cpf": formatted(kyc["cpf"]),
            "birth_date": kyc["birth_date"], "address": kyc["address"]})
    return render_template("kyc/index.html", kyc=kyc, levels=levels,
                           current=next((l for l in levels if l["kyc_level"] == kyc["kyc_level"]), None),
                           data_form=data_form, documents_form=documents_form or KycDocumentsForm(formdata=None),
                           cpf_formatted=formatted), status


@bp.get("/kyc")
@login_required
def index():
    return _page()


@bp.post("/kyc")
@login_required
def submit_data():
    form = KycDataForm()
    if form.validate_on_submit():
        try:
            level = db.call_one("api.submit_kyc_data", user_id=current_user.id, full_name=form.full_name.data,
                                cpf=form.cpf.data, birth_date=form.birth_date.data, address=form.address.data,
                                ip=request.remote_addr)["submit_kyc_data"]
        except DomainError as exc:
            form_error(form, exc)
            return _page(data_form=form, status=exc.status)
        flash(f"Dados confirmados: sua conta está no nível {level}.", "success")
        return redirect(url_for("kyc.index"))
    return _page(data_form=form, status=422)


@bp.post("/kyc/documents")
@login_required
def upload_documents():
    form = KycDocumentsForm()
    if not form.validate_on_submit():
        return _page(documents_form=form, status=422)
    files = {}
    for name in ("document", "selfie"):
        try:
            files[name] = uploads.read(request.files.get(name), required=True)
        except uploads.UploadError as exc:
            getattr(form, name).errors = [str(exc)]
    if form.document.errors or form.selfie.errors:
        return _page(documents_form=form, status=422)
    stored = {}
    try:
        for name, upload in files.items():
            stored[name] = uploads.save(upload, "kyc", folder=str(int(current_user.id)))
        doc, selfie = files["document"], files["selfie"]
        db.call("api.submit_kyc_documents", user_id=current_user.id,
                document_path=stored["document"], document_sha256=doc.sha256, document_content_type=doc.content_type,
                document_size=doc.size, selfie_path=stored["selfie"], selfie_sha256=selfie.sha256,
                selfie_content_type=selfie.content_type, selfie_size=selfie.size, ip=request.remote_addr)
    except DomainError as exc:
        for path in stored.values():
            uploads.remove("kyc", path)
        form_error(form, exc)
        return _page(documents_form=form, status=exc.status)
    except Exception:
        for path in stored.values():
            uploads.remove("kyc", path)
        raise
    flash("Documentos enviados. Você será avisado quando a análise terminar.", "success")
    return redirect(url_for("kyc.index"))


@bp.get("/kyc/documents/<id:document_id>")
@login_required
def document(document_id: int):
    """A KYC file, for its owner or an admin; anyone else gets 404 (as if it did not exist)."""
    try:
        row = db.call_one("api.get_kyc_document", user_id=current_user.id, document_id=document_id)
    except DomainError as exc:
        abort(404 if exc.status == 404 else exc.status)
    path = uploads.existing("kyc", row["storage_path"])
    if path is None:
        current_app.logger.error("KYC document %s missing on disk: %s", document_id, row["storage_path"])
        abort(404)
    response = send_file(path, mimetype=row["content_type"], max_age=0,
                         download_name=f"{row['kind']}-{document_id}.{row['storage_path'].rsplit('.', 1)[1]}")
    response.headers["Cache-Control"] = "private, no-store"
    return response
