# One image for every cobuy component; the command picks which (see docker-compose.yml).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared shared
COPY gateway gateway
COPY services services
COPY cobuy cobuy
# the pages' and mails' catalogs, compiled into the wheel (the .mo files are never committed)
RUN pip install --no-cache-dir "babel>=2.14" \
 && for service in catalog mailer; do pybabel compile -d services/$service/translations || exit 1; done
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin cobuy
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
WORKDIR /tmp
ENV PYTHONUNBUFFERED=1
EXPOSE 8000 8080
ENTRYPOINT ["cobuy"]
CMD ["serve", "gateway", "--bind", "0.0.0.0:8080"]
