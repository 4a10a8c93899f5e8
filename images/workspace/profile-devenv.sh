# shellcheck shell=sh
# /etc/profile.d/devenv.sh: login sh/bash sessions over ssh get the pod's
# environment, saved by devenv-workspace-entrypoint (see /etc/zsh/zshenv for zsh).
if [ -n "${SSH_CONNECTION-}" ] && [ -n "${DEVENV_RUNTIME_DIR-}" ] \
  && [ -f "$DEVENV_RUNTIME_DIR/environment" ] \
  && [ "$(stat -c %u "$DEVENV_RUNTIME_DIR/environment")" = "$(id -u)" ]; then
  . "$DEVENV_RUNTIME_DIR/environment"
fi
